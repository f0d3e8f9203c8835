/**
 * Builds the instructor dashboard (Preact + uPlot) into src/admin/ui/dist, which the control plane
 * serves at /admin/. Everything is bundled: no CDN, no web fonts (workshop networks may be closed).
 * `npm run build:ui` runs it; `npm run build` too. For development, `npx vite --config
 * src/admin/ui/vite.config.ts` proxies the API to a control plane on http://127.0.0.1:8080.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const target = process.env.COMFY_MULTI_SERVER ?? 'http://127.0.0.1:8080';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/admin/',
  publicDir: false,
  logLevel: 'warn',
  clearScreen: false,
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      '/admin/api': { target, ws: true, changeOrigin: false },
      '/login': { target },
      '/logout': { target },
    },
  },
});
