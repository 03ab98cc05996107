import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

// Built into dist/, committed, and embedded in the weir binary.
export default defineConfig({
  plugins: [vue()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    chunkSizeWarningLimit: 1500,
    reportCompressedSize: false,
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:9108" },
  },
});
