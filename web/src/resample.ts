// Pillow's Image.resize, so the page feeds a classifier what the worker's training and the
// manifest's host steps (worker/export/host_preprocessing.py) feed it (exactly but for the
// pass order noted in resize(); a detector trains on torchvision's resize, which is not
// Pillow's to the level, as host_preprocessing.py notes).
// A canvas's drawImage resize is not Pillow's: torchvision's antialiased resize, already
// close, moved a classifier's probabilities by up to 6.8e-3 (host_preprocessing.py's note).
// This is the arithmetic of Pillow's libImaging/Resample.c (separable convolution whose
// filter widens with the downscale, 8-bit fixed-point coefficients, rounding and clipping)
// and, for nearest, of its affine transform.

export interface Rgb {
  width: number;
  height: number;
  data: Uint8Array; // RGB, row-major, 3 bytes per pixel
}

export type Interpolation = "bilinear" | "bicubic" | "nearest";

const PRECISION_BITS = 32 - 8 - 2;

interface Filter {
  support: number;
  weight(x: number): number;
}

const FILTERS: Record<Exclude<Interpolation, "nearest">, Filter> = {
  bilinear: {
    support: 1,
    weight(x) {
      const distance = Math.abs(x);
      return distance < 1 ? 1 - distance : 0;
    },
  },
  bicubic: {
    support: 2,
    weight(x) {
      const a = -0.5;
      const distance = Math.abs(x);
      if (distance < 1) return ((a + 2) * distance - (a + 3)) * distance * distance + 1;
      if (distance < 2) return (((distance - 5) * distance + 8) * distance - 4) * a;
      return 0;
    },
  },
};

interface Coefficients {
  size: number; // taps per output pixel
  first: Int32Array; // first input index per output pixel
  count: Int32Array; // taps used per output pixel
  weights: Int32Array; // fixed point, `size` per output pixel
}

/** precompute_coeffs and normalize_coeffs_8bpc of Resample.c for one axis. */
function coefficients(inSize: number, outSize: number, filter: Filter): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const size = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * size);
  const taps = new Float64Array(size);
  const inverse = 1 / filterScale; // Pillow multiplies by its inverse: the same rounding
  for (let out = 0; out < outSize; out++) {
    const center = (out + 0.5) * scale;
    // C's (int) cast truncates toward zero.
    const low = Math.max(Math.trunc(center - support + 0.5), 0);
    const high = Math.min(Math.trunc(center + support + 0.5), inSize) - low;
    let total = 0;
    for (let tap = 0; tap < high; tap++) {
      taps[tap] = filter.weight((tap + low - center + 0.5) * inverse);
      total += taps[tap];
    }
    for (let tap = 0; tap < high; tap++) {
      const weight = total !== 0 ? taps[tap] / total : taps[tap];
      const fixed = weight * (1 << PRECISION_BITS);
      weights[out * size + tap] = Math.trunc(weight < 0 ? fixed - 0.5 : fixed + 0.5);
    }
    first[out] = low;
    count[out] = high;
  }
  return { size, first, count, weights };
}

function clip8(sum: number): number {
  const value = sum >> PRECISION_BITS;
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

/** One horizontal pass over rows [top, top + rows) of `image`. */
function horizontal(image: Rgb, top: number, rows: number, outWidth: number, c: Coefficients): Rgb {
  const out = new Uint8Array(outWidth * rows * 3);
  const half = 1 << (PRECISION_BITS - 1);
  for (let y = 0; y < rows; y++) {
    const row = (y + top) * image.width * 3;
    for (let x = 0; x < outWidth; x++) {
      let r = half;
      let g = half;
      let b = half;
      const base = x * c.size;
      for (let tap = 0; tap < c.count[x]; tap++) {
        const weight = c.weights[base + tap];
        const at = row + (c.first[x] + tap) * 3;
        r += image.data[at] * weight;
        g += image.data[at + 1] * weight;
        b += image.data[at + 2] * weight;
      }
      const to = (y * outWidth + x) * 3;
      out[to] = clip8(r);
      out[to + 1] = clip8(g);
      out[to + 2] = clip8(b);
    }
  }
  return { width: outWidth, height: rows, data: out };
}

/** One vertical pass; `shift` moves the coefficients' rows (the horizontal pass's top). */
function vertical(image: Rgb, outHeight: number, c: Coefficients, shift: number): Rgb {
  const out = new Uint8Array(image.width * outHeight * 3);
  const half = 1 << (PRECISION_BITS - 1);
  const stride = image.width * 3;
  for (let y = 0; y < outHeight; y++) {
    const base = y * c.size;
    const low = c.first[y] - shift;
    for (let x = 0; x < image.width; x++) {
      let r = half;
      let g = half;
      let b = half;
      for (let tap = 0; tap < c.count[y]; tap++) {
        const weight = c.weights[base + tap];
        const at = (low + tap) * stride + x * 3;
        r += image.data[at] * weight;
        g += image.data[at + 1] * weight;
        b += image.data[at + 2] * weight;
      }
      const to = (y * image.width + x) * 3;
      out[to] = clip8(r);
      out[to + 1] = clip8(g);
      out[to + 2] = clip8(b);
    }
  }
  return { width: image.width, height: outHeight, data: out };
}

/** Pillow's affine nearest: each output pixel's centre mapped back, rounded down. */
function nearest(image: Rgb, width: number, height: number): Rgb {
  const out = new Uint8Array(width * height * 3);
  const xScale = image.width / width;
  const yScale = image.height / height;
  for (let y = 0; y < height; y++) {
    const source = Math.min(Math.floor((y + 0.5) * yScale), image.height - 1);
    for (let x = 0; x < width; x++) {
      const column = Math.min(Math.floor((x + 0.5) * xScale), image.width - 1);
      const from = (source * image.width + column) * 3;
      out.set(image.data.subarray(from, from + 3), (y * width + x) * 3);
    }
  }
  return { width, height, data: out };
}

/** `image` resized to width × height as Pillow's Image.resize(size, filter) does. */
export function resize(image: Rgb, width: number, height: number, how: Interpolation): Rgb {
  if (width === image.width && height === image.height) return image;
  if (how === "nearest") return nearest(image, width, height);
  const filter = FILTERS[how];
  const across = coefficients(image.width, width, filter);
  const down = coefficients(image.height, height, filter);
  if (width === image.width) return vertical(image, height, down, 0);
  if (height === image.height) return horizontal(image, 0, image.height, width, across);
  // The pass order decides some pixels by one level. Upstream Pillow always goes horizontal
  // first; the Pillow 13.0.0 build the worker pins goes vertical first when the height
  // shrinks while the width grows (measured: tests/web/test_resample.py), and chooses by
  // a rule its source does not show when both shrink, where this page keeps upstream's
  // order: then bilinear may be one level off at some pixels (bicubic more).
  if (width > image.width && height < image.height) {
    return horizontal(vertical(image, height, down, 0), 0, height, width, across);
  }
  // Only the rows the vertical pass reads, as Pillow does.
  const top = down.first[0];
  const bottom = down.first[height - 1] + down.count[height - 1];
  return vertical(horizontal(image, top, bottom - top, width, across), height, down, top);
}

/** A window of `image` (Pillow's crop within the image). */
export function crop(image: Rgb, left: number, top: number, width: number, height: number): Rgb {
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * image.width + left) * 3;
    out.set(image.data.subarray(from, from + width * 3), y * width * 3);
  }
  return { width, height, data: out };
}
