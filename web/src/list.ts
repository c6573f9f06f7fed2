// A profile's trainings, live while the page is open: polled every 2 s only while one
// is still queued or running.

import { ApiError, call, FINISHED, isFinal, path, POLL_MS, retryDelay, type Session, type Summary } from "./api";
import { h, percent, replace, when } from "./dom";

export function listView(app: HTMLElement, session: Session): () => void {
  let timer: number | undefined;
  let stopped = false;
  let requests = 0;
  let failures = 0;
  const table = h("tbody");
  const problem = h("p", { class: "error", role: "alert" });
  replace(
    app,
    h("h1", {}, `Trainings of ${session.profile}`),
    h("p", {}, h("a", { href: "#/new", class: "button", id: "new-training" }, "Start a training")),
    h(
      "table",
      { id: "trainings" },
      h("thead", {}, h("tr", {}, ...["Name", "State", "Epoch", "Accuracy", "Created", "Last update", ""].map((t) => h("th", {}, t)))),
      table,
    ),
    problem,
  );

  const act = async (method: string, url: string, question: string) => {
    if (!window.confirm(question)) return;
    try {
      await call(method, url);
    } catch (error) {
      problem.textContent = (error as Error).message;
    }
    await refresh();
  };

  const row = (training: Summary) => {
    const finished = FINISHED.includes(training.result);
    const name = training.project_name;
    const button = finished
      ? h("button", { class: "delete", onclick: () => act("DELETE", path.remove(session.profile, name), `Delete '${name}' and its files?`) }, "Delete")
      : h("button", { class: "cancel", onclick: () => act("POST", path.cancel(session.profile, name), `Cancel '${name}'?`) }, "Cancel");
    return h(
      "tr",
      { "data-name": name, "data-state": training.result },
      h("td", {}, h("a", { href: `#/t/${encodeURIComponent(name)}` }, name)),
      h("td", {}, h("span", { class: `state ${training.result.toLowerCase()}` }, training.result)),
      h("td", {}, `${training.current_epoch}/${training.epochs ?? "–"}`),
      h("td", {}, percent(training.accuracy)),
      h("td", {}, when(training.created)),
      h("td", {}, when(training.lastupdate)),
      h("td", {}, button),
    );
  };

  async function refresh(): Promise<void> {
    window.clearTimeout(timer);
    const asked = ++requests; // only the latest answer may paint
    let trainings: Summary[];
    try {
      trainings = (await call<{ trainings: Summary[] }>("GET", path.list(session.profile))).trainings;
      problem.textContent = "";
      failures = 0;
    } catch (error) {
      if (stopped || asked !== requests) return;
      if (!(error instanceof ApiError && error.status === 404)) {
        // Keep the table; try again later unless asking again cannot help.
        problem.textContent = (error as Error).message;
        if (!isFinal(error)) timer = window.setTimeout(refresh, retryDelay(++failures));
        return;
      }
      trainings = []; // a profile without trainings answers 404
    }
    if (stopped || asked !== requests) return;
    replace(table, ...(trainings.length ? trainings.map(row) : [h("tr", {}, h("td", { colspan: 7 }, "No trainings yet."))]));
    if (trainings.some((training) => !FINISHED.includes(training.result))) {
      timer = window.setTimeout(refresh, POLL_MS);
    }
  }

  void refresh();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
