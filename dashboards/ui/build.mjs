// Builds the UI into dist/ (committed; embedded in tidegate-collector at compile time).
// Deterministic: same sources and lockfile, same bytes.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { check } from './check-i18n.mjs';

// Every message has its Chinese translation (check-i18n.mjs) or the build fails.
const { problems } = await check();
if (problems.length) {
  for (const p of problems) console.error(p);
  throw new Error(`${problems.length} message catalogue problems`);
}

// OUTDIR lets scripts/test.sh rebuild elsewhere and compare with the committed dist/.
const out = process.env.OUTDIR ?? 'dist';
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: 'src/main.js' },
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome110', 'firefox110', 'safari16'],
  outdir: out,
  legalComments: 'none',
  loader: { '.json': 'json' },
  logLevel: process.env.OUTDIR ? 'warning' : 'info',
});
await build({
  entryPoints: { app: 'src/style.css' },
  bundle: true,
  minify: true,
  outdir: out,
  logLevel: process.env.OUTDIR ? 'warning' : 'info',
});
copyFileSync('src/index.html', `${out}/index.html`);
copyFileSync('src/favicon.svg', `${out}/favicon.svg`);
