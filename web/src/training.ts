// One training: its state timeline, progress with ETA and images/s, the curves from
// metrics.json as epochs arrive, the best epoch's confusion matrix and per-class scores,
// the dataset report, the manifest's checks and precision table, every file, quick test.

import { call, download, FINISHED, isFinal, PIPELINE, path, POLL_MS, retryDelay, type Session, type State, type Status } from "./api";
import { drawCurves, type Epoch } from "./charts";
import { bytes, h, percent, replace, when } from "./dom";
import { quickTest, type Manifest } from "./quicktest";

interface Metrics {
  task: string;
  class_names: string[];
  accuracy_is?: string;
  epochs: Epoch[];
  dataset: { val_images: number; train_images: number };
  final: ClassificationReport | DetectionReport | null;
}

interface ClassificationReport {
  accuracy: number;
  per_class: { name: string; precision: number; recall: number; f1: number; support: number }[];
  confusion_matrix: number[][];
}

interface DetectionReport {
  map_50: number;
  map_50_95: number;
  per_class_ap_50: Record<string, number | null>;
  per_class_ap_50_95: Record<string, number | null>;
  ground_truth: Record<string, number>;
}

export function trainingView(app: HTMLElement, session: Session, name: string): () => void {
  let timer: number | undefined;
  let stopped = false;
  const seen: { at: string; state: State; message: string }[] = [];
  const part = (id: string) => h("section", { id });
  const heading = h("h1", {}, name);
  const parts = {
    summary: part("summary"),
    timeline: part("timeline"),
    progress: part("progress"),
    curves: h("section", { id: "curves" }, h("div", { id: "loss-chart" }), h("div", { id: "accuracy-chart" })),
    results: part("results"),
    dataset: part("dataset-report"),
    checks: part("checks"),
    downloads: part("downloads"),
    quick: part("quick-test"),
  };
  replace(app, h("p", {}, h("a", { href: "#/" }, "← all trainings")), heading, ...Object.values(parts));
  let epochsDrawn = -1;
  let finalShown = false;
  let reportShown = false;
  let metrics: Metrics | null = null;
  let failures = 0;

  async function refresh(): Promise<void> {
    window.clearTimeout(timer);
    let status: Status;
    try {
      status = await call<Status>("GET", path.status(session.profile, name));
      failures = 0;
    } catch (error) {
      if (stopped) return;
      const problem = h("p", { class: "error", role: "alert" }, (error as Error).message);
      parts.summary.querySelector(".error")?.remove();
      parts.summary.append(problem);
      // A refusal or a missing training stays so; anything else (503, a network blip) is
      // tried again, less often each time, keeping what the page shows.
      if (!isFinal(error)) timer = window.setTimeout(refresh, retryDelay(++failures));
      return;
    }
    if (stopped) return;
    const last = seen[seen.length - 1];
    if (!last || last.state !== status.result || last.message !== status.message) {
      seen.push({ at: status.lastupdate, state: status.result, message: status.message });
    }
    const finished = FINISHED.includes(status.result);
    showSummary(parts.summary, status);
    showTimeline(parts.timeline, status.result, seen);
    const metricsUrl = status.files.metrics;
    // metrics.json changes once per epoch, and once more at the end (the final report).
    if (metricsUrl && (status.current_epoch !== epochsDrawn || (finished && !finalShown))) {
      try {
        metrics = (await (await download(metricsUrl)).json()) as Metrics;
        epochsDrawn = status.current_epoch;
        const score = status.parameters.model_type === "detection" ? "mAP@0.5" : "accuracy";
        drawCurves(parts.curves.children[0] as HTMLElement, parts.curves.children[1] as HTMLElement, metrics.epochs, score);
        showResults(parts.results, metrics);
        finalShown = finished;
      } catch (error) {
        replace(parts.results, h("p", { class: "error" }, `metrics.json: ${(error as Error).message}`));
      }
    }
    showProgress(parts.progress, status, metrics);
    if (status.dataset_report && !reportShown) {
      reportShown = true;
      void showDatasetReport(parts.dataset, status.dataset_report);
    }
    if (finished) {
      showDownloads(parts.downloads, status);
      if (status.manifest) void showManifest(parts.checks, parts.quick, status);
      return;
    }
    timer = window.setTimeout(refresh, POLL_MS);
  }

  void refresh();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

function showSummary(section: HTMLElement, status: Status): void {
  replace(
    section,
    h("p", {}, h("span", { id: "state", class: `state ${status.result.toLowerCase()}` }, status.result), " ", h("span", { id: "message" }, status.message)),
    h(
      "p",
      { class: "hint" },
      `${status.parameters.model_type}, ${String(status.parameters.architecture ?? "")}, ${status.parameters.image_size} px · created ${when(status.created)} · updated ${when(status.lastupdate)}`,
      status.test_accuracy != null ? ` · test accuracy ${percent(status.test_accuracy)}` : "",
    ),
  );
}

function showTimeline(section: HTMLElement, current: State, seen: { at: string; state: State; message: string }[]): void {
  const ended = current === "FAILED" || current === "CANCELLED";
  const steps = ended ? [...PIPELINE.slice(0, -1), current] : PIPELINE;
  const reached = new Set(seen.map((event) => event.state));
  const position = steps.indexOf(current);
  replace(
    section,
    h("h2", {}, "Timeline"),
    h(
      "ol",
      { class: "steps" },
      ...steps.map((state, i) =>
        h("li", { class: state === current ? "current" : i < position || reached.has(state) ? "done" : "todo", "data-state": state }, state),
      ),
    ),
    h("ul", { id: "events" }, ...seen.map((event) => h("li", {}, `${when(event.at)} ${event.state}: ${event.message}`))),
  );
}

function showProgress(section: HTMLElement, status: Status, metrics: Metrics | null): void {
  const epochs = metrics?.epochs ?? [];
  const done = status.current_epoch;
  const mean = epochs.length ? epochs.reduce((sum, e) => sum + e.duration_s, 0) / epochs.length : status.last_epoch_duration_seconds;
  const running = !FINISHED.includes(status.result);
  const eta = running && mean != null ? Math.round(mean * (status.epochs - done)) : null;
  const speed = epochs.length ? epochs[epochs.length - 1].images_per_s : null;
  replace(
    section,
    h("progress", { id: "epoch-progress", max: status.epochs, value: done }),
    h(
      "span",
      { id: "progress-text" },
      ` epoch ${done}/${status.epochs}`,
      eta != null ? ` · about ${eta} s left` : "",
      speed != null ? ` · ${speed.toFixed(0)} images/s` : "",
      status.loss != null ? ` · loss ${status.loss.toFixed(4)}` : "",
      status.accuracy != null ? ` · validation ${percent(status.accuracy)}` : "",
    ),
  );
}

function showResults(section: HTMLElement, metrics: Metrics): void {
  const report = metrics.final;
  if (!report) return replace(section);
  if ("confusion_matrix" in report) return replace(section, ...classification(metrics.class_names, report));
  const names = Object.keys(report.per_class_ap_50);
  replace(
    section,
    h("h2", {}, `Best epoch: mAP@0.5 ${percent(report.map_50)}, mAP@0.5:0.95 ${percent(report.map_50_95)}`),
    h(
      "table",
      { id: "per-class" },
      h("thead", {}, h("tr", {}, h("th", {}, "class"), h("th", {}, "AP@0.5"), h("th", {}, "AP@0.5:0.95"), h("th", {}, "boxes"))),
      h("tbody", {}, ...names.map((n) => h("tr", {}, h("td", {}, n), h("td", {}, percent(report.per_class_ap_50[n])), h("td", {}, percent(report.per_class_ap_50_95[n])), h("td", {}, report.ground_truth[n] ?? 0)))),
    ),
  );
}

function classification(names: string[], report: ClassificationReport): HTMLElement[] {
  const matrix = report.confusion_matrix;
  const cells = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return h(
      "tr",
      {},
      h("th", {}, names[i]),
      ...row.map((count, j) => {
        const cell = h("td", { class: i === j ? "diagonal" : "" }, count);
        // CSSOM, not a style attribute: the CSP allows it.
        cell.style.backgroundColor = `rgba(${i === j ? "5, 150, 105" : "220, 38, 38"}, ${(count / total) * 0.8})`;
        return cell;
      }),
    );
  });
  return [
    h("h2", {}, `Best epoch: validation accuracy ${percent(report.accuracy)}`),
    h(
      "table",
      { id: "confusion", class: "confusion" },
      h("caption", {}, "Confusion matrix (rows: true class, columns: predicted)"),
      h("thead", {}, h("tr", {}, h("th", {}, ""), ...names.map((n) => h("th", {}, n)))),
      h("tbody", {}, ...cells),
    ),
    h(
      "table",
      { id: "per-class" },
      h("thead", {}, h("tr", {}, ...["class", "precision", "recall", "F1", "images"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ...report.per_class.map((c) => h("tr", {}, h("td", {}, c.name), h("td", {}, percent(c.precision)), h("td", {}, percent(c.recall)), h("td", {}, percent(c.f1)), h("td", {}, c.support)))),
    ),
  ];
}

async function showDatasetReport(section: HTMLElement, url: string): Promise<void> {
  try {
    const report = (await (await download(url)).json()) as { images: number; unreadable: { count: number }; warnings: string[]; errors: string[] };
    replace(
      section,
      h("h2", {}, "Dataset report"),
      h("p", {}, `${report.images} images checked, ${report.unreadable.count} unreadable`),
      ...[...report.errors.map((e) => h("p", { class: "error" }, e)), ...report.warnings.map((w) => h("p", { class: "warning" }, w))],
      report.errors.length + report.warnings.length === 0 ? h("p", {}, "No problems found.") : null,
      h("details", {}, h("summary", {}, "The whole report"), h("pre", {}, JSON.stringify(report, null, 1))),
    );
  } catch (error) {
    replace(section, h("p", { class: "error" }, `dataset report: ${(error as Error).message}`));
  }
}

function showDownloads(section: HTMLElement, status: Status): void {
  const links = { ...status.exports, ...(status.manifest ? { manifest: status.manifest } : {}), ...status.files };
  replace(
    section,
    h("h2", {}, "Downloads"),
    h("ul", { class: "downloads" }, ...Object.entries(links).map(([key, url]) => h("li", {}, h("a", { href: url, class: "button", "data-key": key, rel: "noopener" }, key)))),
  );
}

async function showManifest(checks: HTMLElement, quick: HTMLElement, status: Status): Promise<void> {
  let manifest: Manifest;
  try {
    manifest = (await (await download(status.manifest!)).json()) as Manifest;
  } catch (error) {
    replace(checks, h("p", { class: "error" }, `manifest: ${(error as Error).message}`));
    return;
  }
  const rows = Object.entries(manifest.formats).map(([format, result]) =>
    h("tr", { "data-format": format }, h("td", {}, format), h("td", {}, result.status), h("td", {}, result.check?.summary ?? result.error ?? "")),
  );
  const table = manifest.precisions;
  replace(
    checks,
    h("h2", {}, "Export checks"),
    h("table", { id: "format-checks" }, h("thead", {}, h("tr", {}, h("th", {}, "format"), h("th", {}, "status"), h("th", {}, "check"))), h("tbody", {}, ...rows)),
    table
      ? h(
          "table",
          { id: "precisions" },
          h("caption", {}, `Precision variants, scored on ${table.images} validation images (tolerance ${percent(table.tolerance)})`),
          h("thead", {}, h("tr", {}, ...["file", "delivered", "size", "accuracy", "agreement", "latency", "scored"].map((t) => h("th", {}, t)))),
          h(
            "tbody",
            {},
            ...table.rows.map((r) =>
              h("tr", {}, h("td", {}, r.key), h("td", {}, r.delivered ? "yes" : `no: ${r.reason ?? ""}`), h("td", {}, bytes(r.size_bytes)), h("td", {}, percent(r.accuracy)), h("td", {}, percent(r.agreement)), h("td", {}, r.latency_ms == null ? "–" : `${r.latency_ms.toFixed(2)} ms`), h("td", {}, r.simulated ? `simulated: ${r.simulated}` : "this file")),
            ),
          ),
        )
      : null,
  );
  if (status.exports.onnx) {
    // The status's URLs expire (AITRAINER_SAS_LIFETIME_SECONDS): ask again when it is late.
    const fresh = async () =>
      (await call<Status>("GET", path.status(status.profile_id, status.project_name))).exports.onnx;
    quickTest(quick, status.exports.onnx, manifest, fresh);
  }
  else replace(quick, h("p", { class: "hint" }, "Quick test needs the onnx export."));
}
