import { defineConfig } from "vite";

// A production build for keygate-control to embed (control/build.rs): every file but
// index.html gets a content hash in its name, so the service can mark those immutable.
export default defineConfig({
  base: "/console/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsInlineLimit: 0,
    // The polyfill would be bundled as a script anyway; modern Chromium, Firefox and Safari
    // all support modulepreload, and one entry chunk needs none.
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
});
