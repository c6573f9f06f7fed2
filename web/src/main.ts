// The page's routes (in the URL's fragment, never the token): #/ the trainings,
// #/new a start form, #/t/<name> one training. Sign-in comes first.

import "./style.css";
import { session, signOut } from "./api";
import { h, replace } from "./dom";
import { startView } from "./form";
import { listView } from "./list";
import { signInView } from "./signin";
import { trainingView } from "./training";

const app = document.getElementById("app")!;
const nav = document.getElementById("nav")!;
let leave: (() => void) | void;

function route(): void {
  leave?.();
  leave = undefined;
  const current = session();
  if (!current) {
    replace(nav);
    signInView(app, route);
    return;
  }
  replace(
    nav,
    h("span", { id: "who" }, `profile ${current.profile}`),
    h("button", { id: "sign-out", onclick: () => { signOut(); location.hash = "#/"; route(); } }, "Sign out"),
  );
  const fragment = location.hash.replace(/^#/, "") || "/";
  if (fragment === "/new") {
    let left = false;
    leave = () => (left = true);
    void startView(app, current, () => left);
  } else if (fragment.startsWith("/t/")) {
    let name: string;
    try {
      name = decodeURIComponent(fragment.slice(3));
    } catch {
      location.hash = "#/"; // a malformed link: the list instead of a blank page
      return;
    }
    leave = trainingView(app, current, name);
  } else leave = listView(app, current);
}

window.addEventListener("hashchange", route);
route();
