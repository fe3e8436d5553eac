// Bundles the page (src/app.js with livekit-client and @msgpack/msgpack) and the audio
// worklets into dist/, next to the static files.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { build } from 'esbuild';

const outdir = 'dist';
await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });
await build({
  entryPoints: { app: 'src/app.js', worklets: 'src/audio/worklets.js' },
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  sourcemap: true,
  minify: true,
  outdir,
  logLevel: 'warning',
});
for (const name of ['index.html', 'style.css']) await copyFile(`static/${name}`, `${outdir}/${name}`);
console.log(`built ${outdir}/`);
