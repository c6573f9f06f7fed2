// Quick test: image files run through the delivered model.onnx in the browser
// (onnxruntime-web, WebAssembly, one thread), with the manifest's preprocessing, so what
// the page shows is what an app computes. Classifiers: top-3 labels (and the per-class
// threshold verdict); detectors: the boxes drawn on the image.

import * as ort from "onnxruntime-web/wasm";
import wasmUrl from "onnxruntime-web/ort-wasm-simd-threaded.wasm?url";

import { download } from "./api";
import { h, replace } from "./dom";
import { classifierView, decode, detectorView, tensorData, type HostPreprocessing } from "./preprocess";

ort.env.wasm.wasmPaths = { wasm: wasmUrl };
ort.env.wasm.numThreads = 1; // no cross-origin isolation here, and one thread is what a test can repeat

export interface Manifest {
  task: "classification" | "detection";
  labels: string[];
  image_size: number;
  input: { host_preprocessing: HostPreprocessing };
  class_thresholds?: { thresholds: Record<string, number | null> } | null;
  formats: Record<string, { status: string; files: string[]; check?: { summary: string; passed: boolean } | null; error?: string | null }>;
  precisions?: {
    images: number;
    tolerance: number;
    rows: { key: string; precision: string; delivered: boolean; size_bytes: number | null; accuracy: number | null; agreement: number | null; latency_ms: number | null; reason: string | null; simulated: string | null }[];
  } | null;
}

interface Detection {
  box: number[]; // x1, y1, x2, y2 in pixels of the model's input
  score: number;
  label: string;
}

export function quickTest(
  container: HTMLElement,
  modelUrl: string,
  manifest: Manifest,
  freshUrl: () => Promise<string>,
): void {
  let session: Promise<ort.InferenceSession> | null = null;
  const load = async () => {
    // Once with the URL the page has, once more with a fresh one if it has expired.
    const response = await download(modelUrl).catch(async () => download(await freshUrl()));
    const bytes = new Uint8Array(await response.arrayBuffer());
    return ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  };
  const model = () => {
    session ??= load().catch((error) => {
      session = null; // the next drop tries again
      throw error;
    });
    return session;
  };
  const results = h("div", { id: "quick-results" });
  const input = h("input", { id: "quick-files", type: "file", accept: "image/*", multiple: true });
  const zone = h("div", { id: "drop-zone", class: "drop" }, "Drop images here, or pick them: ", input);
  const problem = h("p", { class: "error", role: "alert" });

  const run = async (files: File[]) => {
    problem.textContent = "";
    try {
      const loaded = await model();
      for (const file of files) results.append(await predict(loaded, file, manifest));
    } catch (error) {
      problem.textContent = `quick test: ${(error as Error).message}`;
    }
  };
  input.addEventListener("change", () => void run([...(input.files ?? [])]));
  zone.addEventListener("dragover", (event) => event.preventDefault());
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    void run([...(event.dataTransfer?.files ?? [])]);
  });
  replace(container, h("h2", {}, "Quick test"), h("p", { class: "hint" }, "Runs the exported model.onnx here, in your browser, preprocessed as the manifest says."), zone, problem, results);
}

async function predict(session: ort.InferenceSession, file: File, manifest: Manifest): Promise<HTMLElement> {
  const host = manifest.input.host_preprocessing;
  const image = await decode(file, host);
  const detector = manifest.task === "detection";
  const view = detector ? detectorView(image, host) : classifierView(image, host);
  const started = performance.now();
  const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", tensorData(view), [1, 3, view.height, view.width]) };
  const outputs = await session.run(feeds);
  const milliseconds = performance.now() - started;
  const timing = h("span", { class: "ms" }, `${milliseconds.toFixed(1)} ms`);
  if (!detector) {
    const probabilities = Array.from(outputs[session.outputNames[0]].data as Float32Array);
    return classified(file, probabilities, manifest, timing);
  }
  const boxes = outputs.boxes.data as Float32Array;
  const scores = outputs.scores.data as Float32Array;
  const labels = outputs.labels.data as BigInt64Array;
  const detections: Detection[] = Array.from(scores, (score, i) => ({
    box: Array.from(boxes.subarray(i * 4, i * 4 + 4)),
    score,
    label: manifest.labels[Number(labels[i])],
  }));
  return drawn(file, image.width, image.height, view.width, view.height, detections, timing);
}

function classified(file: File, probabilities: number[], manifest: Manifest, timing: HTMLElement): HTMLElement {
  const order = probabilities.map((p, i) => [p, i] as const).sort((a, b) => b[0] - a[0]).slice(0, 3);
  const thresholds = manifest.class_thresholds?.thresholds;
  const lines = order.map(([p, i]) => {
    const label = manifest.labels[i];
    const threshold = thresholds?.[label];
    const verdict = threshold == null ? "" : p >= threshold ? ` ✔ above its threshold ${threshold.toFixed(3)}` : ` ✘ below its threshold ${threshold.toFixed(3)}`;
    return h("li", { "data-label": label }, `${label}: ${(p * 100).toFixed(2)} %${verdict}`);
  });
  return h(
    "figure",
    { class: "prediction", "data-file": file.name, "data-top": manifest.labels[order[0][1]], "data-probabilities": JSON.stringify(probabilities) },
    h("img", { src: URL.createObjectURL(file), alt: file.name }),
    h("figcaption", {}, h("strong", {}, file.name), " ", timing, h("ol", {}, ...lines)),
  );
}

function drawn(file: File, width: number, height: number, inputWidth: number, inputHeight: number, detections: Detection[], timing: HTMLElement): HTMLElement {
  const canvas = h("canvas", { width, height });
  const context = canvas.getContext("2d")!;
  const picture = new Image();
  picture.src = URL.createObjectURL(file);
  picture.onload = () => {
    context.drawImage(picture, 0, 0);
    const [sx, sy] = [width / inputWidth, height / inputHeight];
    context.lineWidth = Math.max(2, width / 200);
    context.font = `${Math.max(12, width / 40)}px sans-serif`;
    for (const { box, score, label } of detections) {
      const [x1, y1, x2, y2] = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy];
      context.strokeStyle = context.fillStyle = "#dc2626";
      context.strokeRect(x1, y1, x2 - x1, y2 - y1);
      context.fillText(`${label} ${score.toFixed(2)}`, x1 + 2, Math.max(y1 - 4, 12));
    }
  };
  return h(
    "figure",
    { class: "prediction", "data-file": file.name, "data-detections": JSON.stringify(detections) },
    canvas,
    h("figcaption", {}, h("strong", {}, file.name), " ", timing, ` ${detections.length} detections`),
  );
}
