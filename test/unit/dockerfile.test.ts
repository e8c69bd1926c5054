// The image recipe, checked by parsing it. No docker engine (and no registry
// that serves hadolint as an npm package) exists on these machines, so the
// properties the runtime depends on are asserted here instead: two Node LTS
// stages, util-linux's mount in the runtime image, the files main.js reads at
// run time, an exec-form ENTRYPOINT, and nothing fetched from a URL or baked
// in as a secret.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

interface Instruction {
  /** Upper-cased keyword: FROM, RUN, COPY... */
  cmd: string
  /** Everything after the keyword, continuation lines joined with a space. */
  args: string
  /** 1-based line where the instruction starts. */
  line: number
  /** The comment lines right above the instruction (text after '#'). */
  comments: string[]
}

interface Stage {
  from: string
  name?: string
  instructions: Instruction[]
}

/**
 * A small Dockerfile parser: comments, parser directives and blank lines are
 * dropped, backslash continuations joined (comment lines inside a
 * continuation are skipped, as BuildKit does). Enough for our own file; not
 * heredocs or a custom escape character.
 */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = []
  const lines = text.split(/\r?\n/)
  let comments: string[] = []
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? ''
    const trimmed = raw.trim()
    if (trimmed === '') {
      comments = []
      continue
    }
    if (trimmed.startsWith('#')) {
      comments.push(trimmed.replace(/^#\s?/, ''))
      continue
    }
    const start = i + 1
    let body = trimmed
    while (body.endsWith('\\')) {
      body = body.slice(0, -1).trimEnd()
      let next = lines[++i]
      while (next !== undefined && next.trim().startsWith('#')) next = lines[++i]
      if (next === undefined) break
      body += ' ' + next.trim()
    }
    const m = /^(\S+)\s*(.*)$/.exec(body)
    if (m) out.push({ cmd: (m[1] ?? '').toUpperCase(), args: m[2] ?? '', line: start, comments })
    comments = []
  }
  return out
}

function stages(instructions: Instruction[]): Stage[] {
  const out: Stage[] = []
  for (const ins of instructions) {
    if (ins.cmd === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)
      if (!m) throw new Error(`line ${ins.line}: cannot read FROM ${ins.args}`)
      out.push({ from: m[1] ?? '', ...(m[2] ? { name: m[2] } : {}), instructions: [] })
    } else if (out.length === 0) {
      if (ins.cmd !== 'ARG') throw new Error(`line ${ins.line}: ${ins.cmd} before the first FROM`)
    } else {
      out[out.length - 1]?.instructions.push(ins)
    }
  }
  return out
}

/** COPY's flags (--from=build) and its sources and destination. */
function parseCopy(args: string): { flags: Record<string, string>; sources: string[]; dest: string } {
  const words = args.split(/\s+/).filter(Boolean)
  const flags: Record<string, string> = {}
  while (words[0]?.startsWith('--')) {
    const [k, v = ''] = (words.shift() ?? '').slice(2).split('=')
    flags[k ?? ''] = v
  }
  const dest = words.pop() ?? ''
  return { flags, sources: words, dest }
}

const text = readFileSync(join(root, 'Dockerfile'), 'utf8')
const all = parseDockerfile(text)
const st = stages(all)
const build = st[0]
const runtime = st[st.length - 1]
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { license: string; version: string }

t.test('the parser', async (t) => {
  const parsed = parseDockerfile(['# syntax=docker/dockerfile:1', 'FROM a AS b', '# note', 'RUN x \\', '  # inside', '  && y', '', 'ENTRYPOINT ["n"]'].join('\n'))
  t.same(
    parsed.map((i) => [i.cmd, i.args, i.line]),
    [
      ['FROM', 'a AS b', 2],
      ['RUN', 'x && y', 4],
      ['ENTRYPOINT', '["n"]', 8],
    ],
  )
  t.same(parsed[1]?.comments, ['note'])
  t.same(stages(parsed).map((s) => [s.from, s.name]), [['a', 'b']])
  t.throws(() => stages(parseDockerfile('RUN x\nFROM a')), /RUN before the first FROM/)
})

t.test('two stages on the current Node LTS, Debian slim', async (t) => {
  t.ok(st.length >= 2, 'multi-stage: the build toolchain stays out of the runtime image')
  t.ok(build?.name, 'the build stage is named')
  for (const s of st) {
    const m = /^node:(\d+)-([a-z]+)-slim$/.exec(s.from)
    t.ok(m, `${s.from}: an official node:<major>-<debian>-slim image`)
    t.equal(m?.[1], '24', `${s.from}: Node 24, the LTS the production image runs`)
    // Node's LTS lines are the even majors; an odd one is never supported long.
    t.equal(Number(m?.[1]) % 2, 0, `${s.from}: an LTS (even) major`)
    t.equal(m?.[2], 'bookworm', `${s.from}: Debian 12`)
  }
  t.equal(build?.from, runtime?.from, 'one base: node_modules built in the first stage run unchanged in the last')
  t.not(runtime?.from, build?.name, 'the runtime starts from the base image, not from the build stage')
})

t.test('build stage: npm ci, compile, bundle', async (t) => {
  const ins = build?.instructions ?? []
  const runs = ins.filter((i) => i.cmd === 'RUN').map((i) => i.args)
  const ci = ins.findIndex((i) => i.cmd === 'RUN' && /\bnpm ci\b/.test(i.args))
  const lock = ins.findIndex((i) => i.cmd === 'COPY' && parseCopy(i.args).sources.includes('package-lock.json'))
  const srcCopy = ins.findIndex((i) => i.cmd === 'COPY' && parseCopy(i.args).sources.some((s) => s.startsWith('src')))
  t.ok(ci >= 0, 'npm ci: installs exactly the lockfile')
  t.ok(lock >= 0 && lock < ci, 'package-lock.json is copied before npm ci')
  t.ok(srcCopy > ci, 'sources are copied after npm ci, so the dependency layer stays cached')
  const build_ = runs.findIndex((r) => /\bnpm run build\b/.test(r))
  const bundle = runs.findIndex((r) => /\bnpm run bundle\b/.test(r))
  t.ok(build_ >= 0, 'npm run build (type-checks and compiles)')
  t.ok(bundle >= build_ && build_ >= 0, 'npm run bundle after the build')
  const copied = ins.filter((i) => i.cmd === 'COPY').flatMap((i) => parseCopy(i.args).sources.map((s) => s.replace(/\/$/, '')))
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'proto', 'scripts/bundle.ts']) {
    t.ok(copied.includes(f), `the build stage copies ${f}`)
  }
})

t.test('runtime stage: only mount from apt, lists cleaned', async (t) => {
  const ins = runtime?.instructions ?? []
  const apt = ins.filter((i) => i.cmd === 'RUN' && /apt-get/.test(i.args))
  t.equal(apt.length, 1, 'one apt RUN: update, install and clean in the same layer')
  const run = apt[0]?.args ?? ''
  t.match(run, /apt-get update/, 'apt-get update first')
  const install = /apt-get install\s+(.*?)(?:&&|;|$)/.exec(run)?.[1] ?? ''
  t.match(install, /(^|\s)-y(\s|$)/, 'non-interactive')
  t.match(install, /--no-install-recommends/, 'no recommended packages')
  const packages = install.split(/\s+/).filter((w) => w !== '' && !w.startsWith('-'))
  t.same(packages, ['mount'], "util-linux's mount and umount (Debian package mount), and nothing else")
  t.match(run, /rm -rf \/var\/lib\/apt\/lists\/\*/, 'apt lists removed in the same layer')
  t.notOk(ins.some((i) => i.cmd === 'RUN' && /\bnpm (ci|install)\b/.test(i.args)), 'no npm install in the runtime stage')
})

t.test('runtime stage: the files main.js needs, and the entrypoint', async (t) => {
  const ins = runtime?.instructions ?? []
  const workdir = ins.filter((i) => i.cmd === 'WORKDIR').at(-1)?.args
  t.equal(workdir, '/app')
  const copies = ins.filter((i) => i.cmd === 'COPY').map((i) => parseCopy(i.args))
  const fromBuild = (src: string): string | undefined =>
    copies.find((c) => c.flags.from === build?.name && c.sources.some((s) => s.replace(/\/$/, '').endsWith(src)))?.dest
  // The bundle (dist/bundle) reads ../../package.json and ../../proto/*.proto.
  t.equal(fromBuild('/dist/bundle'), './dist/bundle/', 'the bundle at /app/dist/bundle')
  t.notOk(copies.some((c) => c.sources.some((s) => s.includes('node_modules'))), 'no node_modules: the bundle holds every dependency')
  t.equal(fromBuild('/package.json'), './package.json', 'package.json at /app (the version main reports)')
  const proto = copies.find((c) => c.sources.some((s) => s.replace(/\/$/, '') === 'proto'))
  t.equal(proto?.dest, './proto/', 'proto/ at /app/proto (loaded at run time)')
  t.ok(existsSync(join(root, 'proto', 'csi.proto')), 'proto/csi.proto exists to be copied')

  const entry = all.filter((i) => i.cmd === 'ENTRYPOINT')
  t.equal(entry.length, 1, 'one ENTRYPOINT')
  let argv: unknown
  t.doesNotThrow(() => {
    argv = JSON.parse(entry[0]?.args ?? '')
  }, 'exec form (a JSON array): node is PID 1 and receives SIGTERM')
  t.same(argv, ['node', '/app/dist/bundle/main.js'])
  t.notOk(all.some((i) => i.cmd === 'CMD'), 'no CMD: the DaemonSet passes every flag')

  const user = ins.filter((i) => i.cmd === 'USER').at(-1)
  t.ok(user === undefined || /^(root|0)(:(root|0))?$/.test(user.args), 'runs as root')
  t.match(user?.comments.join(' ') ?? '', /root/i, 'the USER line says why it is root')
})

t.test('nothing fetched from a URL, no secret baked in', async (t) => {
  t.notOk(all.some((i) => i.cmd === 'ADD' && /\b(https?|git):\/\/|git@/.test(i.args)), 'no ADD of a URL')
  t.notOk(all.some((i) => i.cmd === 'ADD'), 'COPY only: ADD would also unpack archives')
  t.notOk(all.some((i) => i.cmd === 'RUN' && /\b(curl|wget)\b/.test(i.args)), 'no curl or wget')
  const secretName = /(secret|token|passw(or)?d|api[_-]?key|private[_-]?key|credential|npm_?auth)/i
  for (const i of all.filter((i) => i.cmd === 'ENV' || i.cmd === 'ARG')) {
    t.notMatch(i.args, secretName, `line ${i.line}: ${i.cmd} names no secret`)
  }
  const sources = all.filter((i) => i.cmd === 'COPY').flatMap((i) => parseCopy(i.args).sources)
  t.notOk(sources.some((s) => /\.npmrc|\.env|kubeconfig|\.pem$|\.key$/.test(s)), 'no .npmrc, .env, kubeconfig or key copied')
})

t.test('OCI labels', async (t) => {
  const labels = all.filter((i) => i.cmd === 'LABEL').map((i) => i.args).join(' ')
  const value = (k: string): string | undefined => new RegExp(`${k.replace(/\./g, '\\.')}="([^"]*)"`).exec(labels)?.[1]
  for (const k of ['title', 'description', 'licenses', 'source', 'version', 'revision']) {
    t.ok(value(`org.opencontainers.image.${k}`), `org.opencontainers.image.${k}`)
  }
  t.equal(value('org.opencontainers.image.licenses'), pkg.license, "the package's license")
  const versionArg = /^VERSION=(\S+)$/.exec(runtime?.instructions.find((i) => i.cmd === 'ARG' && i.args.startsWith('VERSION='))?.args ?? '')
  t.equal(versionArg?.[1], pkg.version, "the VERSION build argument defaults to package.json's version")
})

t.test('.dockerignore', async (t) => {
  const patterns = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
  for (const p of ['node_modules', 'dist', '.git', '.tap', 'coverage', 'crds/*.yaml', 'bench/results', 'test']) {
    t.ok(patterns.includes(p), `excludes ${p}`)
  }
  // What the build stage copies must stay in the context.
  for (const keep of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src', 'proto', 'proto/csi.proto', 'scripts', 'scripts/bundle.ts']) {
    t.notOk(patterns.includes(keep), `keeps ${keep}`)
  }
  t.notOk(patterns.some((p) => p.startsWith('!')), 'no re-includes that could bring an excluded file back')
})
