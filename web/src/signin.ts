// Sign-in: a token and a profile, kept in sessionStorage only. GET /profiles offers the
// profiles the token may see; any other valid profile id may be typed.

import { ApiError, call, path, signIn } from "./api";
import { h, replace } from "./dom";

export function signInView(app: HTMLElement, done: () => void): void {
  const token = h("input", { id: "token", type: "password", autocomplete: "off", required: true });
  const profile = h("input", { id: "profile", list: "profiles", required: true });
  const choices = h("datalist", { id: "profiles" });
  const problem = h("p", { class: "error", role: "alert" });
  const lookUp = async () => {
    problem.textContent = "";
    try {
      const answer = await call<{ profiles: string[] }>("GET", path.profiles, undefined, token.value);
      replace(choices, ...answer.profiles.map((name) => h("option", { value: name })));
      if (!profile.value && answer.profiles.length) profile.value = answer.profiles[0];
    } catch (error) {
      problem.textContent = (error as Error).message;
    }
  };
  const form = h(
    "form",
    {
      id: "signin",
      onsubmit: async (event: Event) => {
        event.preventDefault();
        problem.textContent = "";
        try {
          // The token is checked before it is kept, by a profile's list (one partition,
          // where /profiles may scan the table): 404 only says the profile has none yet.
          await call("GET", path.list(profile.value.trim()), undefined, token.value).catch((error) => {
            if (!(error instanceof ApiError && error.status === 404)) throw error;
          });
          signIn(token.value, profile.value.trim());
          done();
        } catch (error) {
          problem.textContent = (error as Error).message;
        }
      },
    },
    h("h1", {}, "Sign in"),
    h("label", {}, "API token", token),
    h("button", { type: "button", id: "load-profiles", onclick: lookUp }, "Show my profiles"),
    h("label", {}, "Profile", profile),
    choices,
    h("button", { type: "submit" }, "Sign in"),
    problem,
    h("p", { class: "hint" }, "The token stays in this tab (sessionStorage) and is sent only to this API."),
  );
  replace(app, form);
}
