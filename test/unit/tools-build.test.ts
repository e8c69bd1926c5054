// test/tools/build.sh's cache handling, against a scratch cache folder and a
// stub `go` on the PATH, so it runs in seconds. A fresh machine's cache holds
// no pin set at all: the first run once failed exactly there (a `grep -v`
// selecting nothing under pipefail), while every warm machine passed.
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const buildSh = join(root, 'test/tools/build.sh')
const ALL_TOOLS = ['kube-apiserver', 'etcd', 'kubectl', 'csi-sanity', 'cert-manager-controllers', 'helm', 'kubelet']

interface Scratch { dir: string; cache: string; crds: string; calls: string; env: NodeJS.ProcessEnv }

// The stub answers the four go commands build.sh runs and logs each call.
const STUB_GO = `#!/usr/bin/env bash
echo "$*" >> "$STUB_CALLS"
case "$1 $2" in
  "list -deps") printf 'pkg/a\\npkg/b\\npkg/c\\n' ;;
  "list -m")
    case "$*" in
      *'{{.Version}}'*) echo v1.21.2 ;;
      *'{{.Dir}}'*) echo "$STUB_CM_DIR" ;;
    esac ;;
  "build -v")
    out=""; prev=""
    for a in "$@"; do [ "$prev" = "-o" ] && out=$a; prev=$a; done
    echo "pkg/a" >&2
    printf '#!/bin/sh\\necho stub\\n' > "$out"; chmod +x "$out" ;;
  *) echo "stub go: unexpected: $*" >&2; exit 3 ;;
esac
`

function scratch(t: { teardown(fn: () => unknown): void }): Scratch {
  const dir = mkdtempSync(join(tmpdir(), 'tools-build-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const stubBin = join(dir, 'stub-bin')
  mkdirSync(stubBin)
  writeFileSync(join(stubBin, 'go'), STUB_GO)
  chmodSync(join(stubBin, 'go'), 0o755)
  const cmDir = join(dir, 'cert-manager')
  mkdirSync(join(cmDir, 'deploy/crds'), { recursive: true })
  writeFileSync(join(cmDir, 'deploy/crds/cert-manager.io_certificaterequests.yaml'), 'kind: CustomResourceDefinition\n')
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${stubBin}:${process.env.PATH}`, CSI_TOOLS_CACHE: join(dir, 'cache'), CSI_CRDS_DIR: join(dir, 'crds'), STUB_CALLS: join(dir, 'calls'), STUB_CM_DIR: cmDir }
  for (const k of ['KUBEBUILDER_ASSETS', 'TEST_ASSET_KUBE_APISERVER', 'TEST_ASSET_ETCD', 'TEST_ASSET_KUBECTL', 'TEST_ASSET_KUBELET']) delete env[k]
  return { dir, cache: join(dir, 'cache'), crds: join(dir, 'crds'), calls: join(dir, 'calls'), env }
}

function run(s: Scratch, args: string[] = []): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', [buildSh, ...args], { env: s.env, encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

const builds = (s: Scratch): string[] => (existsSync(s.calls) ? readFileSync(s.calls, 'utf8').split('\n').filter(l => l.startsWith('build ')) : [])

/** Older pin sets, oldest first, each with a file inside and an mtime an hour apart. */
function plantPinSets(s: Scratch, n: number): string[] {
  mkdirSync(s.cache, { recursive: true })
  const names: string[] = []
  for (let i = 0; i < n; i++) {
    const d = join(s.cache, `tools-old${i}`)
    mkdirSync(join(d, 'bin'), { recursive: true })
    writeFileSync(join(d, 'bin/kube-apiserver'), 'old')
    const at = Date.now() / 1000 - (n - i) * 3600
    utimesSync(d, at, at)
    names.push(basename(d))
  }
  return names
}

const pinSets = (s: Scratch): string[] => readdirSync(s.cache).filter(n => n.startsWith('tools-')).sort()

t.test('a fresh cache (no pin set at all) builds every tool and prints the bin folder', async t => {
  const s = scratch(t)
  const r = run(s)
  t.equal(r.status, 0, r.stderr)
  const bin = r.stdout.trim().split('\n').pop()!
  t.ok(bin.startsWith(join(s.cache, 'tools-')), `bin folder under the scratch cache: ${bin}`)
  t.same(readdirSync(bin).sort(), [...ALL_TOOLS].sort(), 'every tool built')
  t.equal(builds(s).length, ALL_TOOLS.length, 'one go build per tool')
  t.match(r.stderr, /a first build on an empty Go cache takes about \d+ min/, 'says what the first build costs before it starts')
  t.ok(existsSync(join(s.crds, 'cert-manager.io_certificaterequests.yaml')), 'CRDs copied to CSI_CRDS_DIR')
  t.equal(readFileSync(join(s.crds, 'VERSION'), 'utf8').trim(), 'v1.21.2')

  const again = run(s)
  t.equal(again.status, 0, again.stderr)
  t.equal(builds(s).length, ALL_TOOLS.length, 'a second run builds nothing')
  t.notMatch(again.stderr, /first build/, 'and announces no build')
  t.equal(again.stdout.trim().split('\n').pop(), bin, 'same bin folder')
})

for (const [others, kept] of [[1, 1], [2, 2], [5, 2]] as const) {
  t.test(`${others} older pin set(s): the current one and the ${kept} newest others are kept`, async t => {
    const s = scratch(t)
    const planted = plantPinSets(s, others)
    const r = run(s)
    t.equal(r.status, 0, r.stderr)
    const current = basename(dirname(r.stdout.trim().split('\n').pop()!))
    t.same(pinSets(s), [current, ...planted.slice(others - kept)].sort())
  })
}

t.test('only the tools named are built; an unknown name is refused', async t => {
  const s = scratch(t)
  const r = run(s, ['etcd', 'kubectl'])
  t.equal(r.status, 0, r.stderr)
  t.same(readdirSync(r.stdout.trim().split('\n').pop()!).sort(), ['etcd', 'kubectl'])
  const bad = run(s, ['kube-apiservr'])
  t.equal(bad.status, 2)
  t.match(bad.stderr, /unknown tool 'kube-apiservr' \(known: kube-apiserver etcd/)
})

t.test('a failed go build fails the run with the tail of its output', async t => {
  const s = scratch(t)
  writeFileSync(join(s.dir, 'stub-bin/go'), STUB_GO.replace('echo "pkg/a" >&2', 'echo "undefined: foo" >&2; exit 1'))
  const r = run(s, ['etcd'])
  t.not(r.status, 0)
  t.match(r.stderr, /etcd: go build failed \(exit 1\); its last lines:\n.*undefined: foo/)
})

t.test('a build that finds the lock held waits for it, then finishes', async t => {
  const s = scratch(t)
  mkdirSync(s.cache, { recursive: true })
  // One process holds the lock (exec keeps the fd in the same process), so killing it frees the lock.
  const holder: ChildProcess = spawn('bash', ['-c', `exec 9>'${join(s.cache, '.build.lock')}'; flock 9; exec sleep 30`], { stdio: 'ignore' })
  t.teardown(() => holder.kill('SIGKILL'))
  // flock takes the lock before it runs sleep: wait until it has.
  for (let i = 0; i < 50 && spawnSync('flock', ['-n', join(s.cache, '.build.lock'), 'true']).status === 0; i++) await new Promise(r => setTimeout(r, 50))
  const child = spawn('bash', [buildSh, 'etcd'], { env: s.env })
  let stderr = ''
  let stdout = ''
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
  const exited = new Promise<number | null>(res => child.on('exit', code => res(code)))
  await new Promise(r => setTimeout(r, 1000))
  t.equal(child.exitCode, null, 'still waiting while the lock is held')
  t.match(stderr, /another build holds .*\.build\.lock; waiting for it/)
  t.same(builds(s), [], 'nothing built while waiting')
  holder.kill('SIGKILL')
  t.equal(await exited, 0, stderr)
  t.equal(builds(s).length, 1, 'built once the lock was released')
  t.ok(stdout.trim().endsWith('/bin'))
})
