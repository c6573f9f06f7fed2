// Start a training: a form built from the API's own OpenAPI schema (every field of the
// contract, its limits and defaults shown and checked here); the API stays the judge.

import { call, path, type Session } from "./api";
import { h, replace } from "./dom";

interface Property {
  type?: string;
  enum?: (string | null)[];
  anyOf?: Property[];
  items?: Property;
  default?: unknown;
  description?: string;
  title?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  pattern?: string;
  format?: string;
}

interface Schema {
  properties: Record<string, Property>;
  required: string[];
}

/** The non-null alternative of an `anyOf: [X, null]`. */
function plain(property: Property): Property {
  const choice = property.anyOf?.find((p) => p.type !== "null");
  return choice ? { ...choice, ...property, anyOf: undefined, type: choice.type, enum: choice.enum } : property;
}

export async function startSchema(): Promise<Schema> {
  const openapi = await (await fetch("/openapi.json")).json();
  return openapi.paths["/starttraining/"].post.requestBody.content["application/json"].schema as Schema;
}

/** What is wrong with a field's value, by the schema's rules; null when nothing. */
/** No value to send: blank, except a required string whose rule accepts "" (folder: the
 * container's root). */
function isEmpty(property: Property, value: unknown, required: boolean): boolean {
  if (value === "" && required && property.type === "string" && property.pattern) {
    return !new RegExp(property.pattern, "u").test("");
  }
  return value === undefined || value === "" || (Array.isArray(value) && value.length === 0);
}

export function problem(name: string, property: Property, value: unknown, required: boolean): string | null {
  if (isEmpty(property, value, required)) return required ? `${name} is required` : null;
  if (typeof value === "number") {
    if (Number.isNaN(value)) return `${name} must be a number`;
    if (property.type === "integer" && !Number.isInteger(value)) return `${name} must be a whole number`;
    if (property.minimum !== undefined && value < property.minimum) return `${name} must be at least ${property.minimum}`;
    if (property.maximum !== undefined && value > property.maximum) return `${name} must be at most ${property.maximum}`;
    if (property.exclusiveMinimum !== undefined && value <= property.exclusiveMinimum) return `${name} must be above ${property.exclusiveMinimum}`;
  }
  if (typeof value === "string") {
    if (property.minLength !== undefined && value.length < property.minLength) return `${name} must have at least ${property.minLength} characters`;
    if (property.maxLength !== undefined && value.length > property.maxLength) return `${name} must have at most ${property.maxLength} characters`;
    if (property.pattern && !new RegExp(property.pattern, "u").test(value)) return `${name} does not have the form the API accepts`;
  }
  if (Array.isArray(value) && property.minItems !== undefined && value.length < property.minItems) {
    return `${name} needs at least ${property.minItems}`;
  }
  return null;
}

type Reader = () => unknown;

function field(name: string, property: Property, required: boolean, preset: unknown): [HTMLElement, Reader] {
  const p = plain(property);
  const id = `field-${name}`;
  const hint = [p.description, p.default !== undefined && p.default !== null ? `default ${JSON.stringify(p.default)}` : "", bounds(p)].filter(Boolean).join(" · ");
  const label = (control: HTMLElement) =>
    h("div", { class: "field", "data-field": name }, h("label", { for: id }, name, required ? " *" : ""), control, h("small", {}, hint), h("span", { class: "error", "data-error-for": name }));
  if (p.type === "array" && p.items?.enum) {
    const chosen = new Set((preset as string[] | undefined) ?? (p.default as string[] | undefined) ?? []);
    const boxes = p.items.enum.map((option) => h("input", { type: "checkbox", value: String(option), name, checked: chosen.has(String(option)) }));
    const group = h("span", { id, class: "choices" }, ...boxes.map((box) => h("label", {}, box, box.value)));
    return [label(group), () => boxes.filter((b) => b.checked).map((b) => b.value)];
  }
  if (p.enum) {
    const select = h("select", { id, name }, ...(required ? [] : [h("option", { value: "" }, "(default)")]), ...p.enum.filter((o) => o !== null && o !== "").map((o) => h("option", { value: String(o), selected: o === preset }, String(o))));
    return [label(select), () => select.value];
  }
  if (p.type === "boolean") {
    const box = h("input", { id, name, type: "checkbox", checked: Boolean(preset ?? p.default) });
    return [label(box), () => box.checked];
  }
  if (p.type === "integer" || p.type === "number") {
    const input = h("input", { id, name, type: "number", step: p.type === "integer" ? 1 : "any", min: p.minimum, max: p.maximum, placeholder: p.default == null ? "" : String(p.default), value: preset == null ? undefined : String(preset) });
    return [label(input), () => (input.value === "" ? undefined : Number(input.value))];
  }
  const secret = p.format === "password";
  const input = h("input", { id, name, type: secret ? "password" : "text", autocomplete: "off", maxlength: p.maxLength, value: preset == null ? undefined : String(preset) });
  return [label(input), () => input.value];
}

function bounds(p: Property): string {
  const parts = [];
  if (p.minimum !== undefined) parts.push(`≥ ${p.minimum}`);
  if (p.exclusiveMinimum !== undefined) parts.push(`> ${p.exclusiveMinimum}`);
  if (p.maximum !== undefined) parts.push(`≤ ${p.maximum}`);
  return parts.join(", ");
}

export async function startView(app: HTMLElement, session: Session, left: () => boolean): Promise<void> {
  const schema = await startSchema();
  if (left()) return; // the user went elsewhere while the schema loaded
  const readers: [string, Property, boolean, Reader][] = [];
  const fields = Object.entries(schema.properties).map(([name, property]) => {
    const required = schema.required.includes(name);
    const [element, read] = field(name, property, required, name === "profile_id" ? session.profile : undefined);
    readers.push([name, plain(property), required, read]);
    return element;
  });
  const outcome = h("p", { id: "start-outcome", role: "alert" });
  const form = h(
    "form",
    {
      id: "start",
      novalidate: true,
      onsubmit: async (event: Event) => {
        event.preventDefault();
        const body: Record<string, unknown> = {};
        let valid = true;
        for (const [name, property, required, read] of readers) {
          const value = read();
          const wrong = problem(name, property, value, required);
          form.querySelector(`[data-error-for="${name}"]`)!.textContent = wrong ?? "";
          valid &&= wrong === null;
          if (!isEmpty(property, value, required)) body[name] = value;
        }
        if (!valid) {
          outcome.textContent = "Some fields need a change (see above).";
          return;
        }
        try {
          const answer = await call<{ message: string; project_name: string }>("POST", path.start, body);
          outcome.textContent = answer.message;
          location.hash = `#/t/${encodeURIComponent(answer.project_name)}`;
        } catch (error) {
          outcome.textContent = (error as Error).message;
        }
      },
    },
    h("h1", {}, "Start a training"),
    ...fields,
    h("button", { type: "submit" }, "Start"),
    outcome,
  );
  replace(app, form);
}
