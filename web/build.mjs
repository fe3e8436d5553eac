// Builds the demo page into dist/: demo/app.js bundled with the package (imported by its name,
// through the exports map, as any app would), livekit-client and @msgpack/msgpack, next to
// the page's static files. The package itself needs no build: it ships src/ as it is.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { build } from 'esbuild';

const outdir = 'dist';
await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });
await build({
  entryPoints: { app: 'demo/app.js' },
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  sourcemap: true,
  minify: true,
  outdir,
  logLevel: 'warning',
});
for (const name of ['index.html', 'style.css']) await copyFile(`demo/${name}`, `${outdir}/${name}`);
console.log(`built ${outdir}/`);
