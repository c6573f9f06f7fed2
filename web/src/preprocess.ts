// An image file as the exported model's input, following the manifest's
// input.host_preprocessing step by step, as worker/export/host_preprocessing.py does:
// decode (EXIF orientation applied), resize the short side (Pillow's filter, level for
// level: resample.ts), centre-crop, scale to [0, 1], NCHW. Detectors stretch to
// resize[0] × resize[1] instead.
//
// What a browser cannot do as the worker does: Pillow's reduced-scale JPEG decode
// (jpeg_reduced_decode) and its scaling of 16-bit images; for those files the page shows
// what a full 8-bit decode gives, as most apps compute.

import { crop, resize, type Interpolation, type Rgb } from "./resample";

export interface HostPreprocessing {
  exif_orientation_applied: boolean;
  transparent_background?: number[];
  interpolation: string;
  resize_short_side?: number;
  center_crop?: [number, number];
  resize?: [number, number];
}

/** The file's pixels as RGB bytes, upright when the manifest says so, transparency
 * composited on the manifest's background. */
export async function decode(file: Blob, host: HostPreprocessing): Promise<Rgb> {
  const bitmap = await createImageBitmap(file, {
    imageOrientation: host.exif_orientation_applied ? "from-image" : "none",
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  if (!context) throw new Error("no 2D canvas");
  const [r, g, b] = host.transparent_background ?? [255, 255, 255];
  context.fillStyle = `rgb(${r}, ${g}, ${b})`;
  context.fillRect(0, 0, bitmap.width, bitmap.height);
  context.drawImage(bitmap, 0, 0);
  const { width, height } = bitmap;
  const rgba = context.getImageData(0, 0, width, height).data;
  bitmap.close(); // its width and height read 0 from here on
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    data[j] = rgba[i];
    data[j + 1] = rgba[i + 1];
    data[j + 2] = rgba[i + 2];
  }
  return { width, height, data };
}

function filter(host: HostPreprocessing): Interpolation {
  const name = host.interpolation.split(",")[0].trim();
  if (name !== "bilinear" && name !== "bicubic" && name !== "nearest") {
    throw new Error(`the manifest's interpolation '${host.interpolation}' is not one this page knows`);
  }
  return name;
}

/** Python's round(): halves go to the even neighbour (the worker's crop offsets). */
function roundHalfEven(value: number): number {
  const floor = Math.floor(value);
  const rest = value - floor;
  if (rest !== 0.5) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** A classifier's steps: the short side to resize_short_side, the centre crop. */
export function classifierView(image: Rgb, host: HostPreprocessing): Rgb {
  const short = host.resize_short_side!;
  const [cropHeight, cropWidth] = host.center_crop!;
  const { width, height } = image;
  const [w, h] =
    width <= height ? [short, Math.floor((short * height) / width)] : [Math.floor((short * width) / height), short];
  const resized = resize(image, w, h, filter(host));
  const left = roundHalfEven((w - cropWidth) / 2);
  const top = roundHalfEven((h - cropHeight) / 2);
  return crop(resized, left, top, cropWidth, cropHeight);
}

/** A detector's step: the whole image stretched to resize. */
export function detectorView(image: Rgb, host: HostPreprocessing): Rgb {
  const [height, width] = host.resize!;
  return resize(image, width, height, filter(host));
}

/** RGB bytes as the model's 1×3×H×W float32 input in [0, 1]. */
export function tensorData(image: Rgb): Float32Array {
  const plane = image.width * image.height;
  const out = new Float32Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    out[i] = image.data[i * 3] / 255;
    out[plane + i] = image.data[i * 3 + 1] / 255;
    out[2 * plane + i] = image.data[i * 3 + 2] / 255;
  }
  return out;
}
