// Bundles the driver into dist/bundle/ (or the folder given): main.js plus
// chunks for what loads on first use (CSR builder, PKCS#12, js-yaml). The
// image runs this, with no node_modules beside it: one parsed file instead
// of some hundreds of modules is about 9 MiB less resident per node (issue 14
// P5). The bundle sits two levels under the package root, as dist/src/ did
// for main.js, so proto/ and package.json are found at ../../ from it.
//
//   node --import tsx scripts/bundle.ts [outdir]
import { build } from 'esbuild'
import { rmSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const outdir = resolve(process.argv[2] ?? join(root, 'dist/bundle'))

rmSync(outdir, { recursive: true, force: true })
await build({
  entryPoints: [join(root, 'src/main.ts')],
  outdir,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  splitting: true,
  // Identifiers kept: logged errors carry their class's name (StepError,
  // ApiError...), and keepNames would cost more memory than it saves.
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
  // CommonJS packages inside an ES module bundle still call require().
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  logLevel: 'warning',
})
process.stdout.write(`bundled the driver into ${outdir}\n`)
