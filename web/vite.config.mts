// The page is built into function_app/ui/, which the API serves at /ui/ and the Functions
// package carries (infra/package_functions.py copies function_app/).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/ui/",
  build: {
    outDir: fileURLToPath(new URL("../function_app/ui", import.meta.url)),
    emptyOutDir: true,
    // onnxruntime-web's wasm is ~12 MB: a file of its own, never inlined.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1024,
  },
});
