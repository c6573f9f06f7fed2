// A few lines instead of a framework: build elements, replace a container's children.

type Child = Node | string | number | null | undefined | false;
type Attributes = Record<string, string | number | boolean | EventListener | undefined>;

/** An element with attributes (`on…` ones become listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...nodes(children));
  return element;
}

function nodes(children: Child[]): (Node | string)[] {
  const kept = children.filter((child) => child != null && child !== false) as (Node | string | number)[];
  return kept.map((child) => (typeof child === "number" ? String(child) : child));
}

export function replace(container: Element, ...children: Child[]): void {
  container.replaceChildren(...nodes(children));
}

export function percent(fraction: number | null | undefined, digits = 1): string {
  return fraction == null ? "–" : `${(fraction * 100).toFixed(digits)} %`;
}

export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : "–";
}

export function bytes(size: number | null | undefined): string {
  if (size == null) return "–";
  return size >= 1e6 ? `${(size / 1e6).toFixed(2)} MB` : `${(size / 1e3).toFixed(1)} kB`;
}
