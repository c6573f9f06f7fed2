// Loss and accuracy per epoch from metrics.json, drawn with uPlot. Each chart's uPlot
// instance hangs on its element (`element.uplot`), so a test reads exactly what is drawn.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Epoch {
  epoch: number;
  train_loss: number;
  val_loss: number;
  val_accuracy: number;
  duration_s: number;
  images_per_s: number;
}

type Charted = HTMLElement & { uplot?: uPlot };

const COLOURS = ["#2563eb", "#dc2626", "#059669"];

function chart(element: Charted, title: string, names: string[], data: uPlot.AlignedData): void {
  if (element.uplot) {
    element.uplot.setData(data);
    return;
  }
  const options: uPlot.Options = {
    title,
    width: Math.min(560, element.clientWidth || 560),
    height: 240,
    scales: { x: { time: false } },
    axes: [{ label: "epoch" }, {}],
    series: [{ label: "epoch" }, ...names.map((label, i) => ({ label, stroke: COLOURS[i], width: 2, points: { show: true } }))],
  };
  element.uplot = new uPlot(options, data, element);
}

/** Draw (or redraw) both charts for these epochs. */
export function drawCurves(loss: HTMLElement, accuracy: HTMLElement, epochs: Epoch[], scoreName: string): void {
  const x = epochs.map((e) => e.epoch);
  chart(loss, "Loss", ["training loss", "validation loss"], [x, epochs.map((e) => e.train_loss), epochs.map((e) => e.val_loss)]);
  chart(accuracy, `Validation ${scoreName}`, [`validation ${scoreName}`], [x, epochs.map((e) => e.val_accuracy)]);
}
