// Builds the two container images the e2e node needs, since nothing here can
// pull one: the pod sandbox ("pause", a static Go program in images/pause)
// and a test image with Debian's static busybox and its applets. Each is an
// OCI image layout packed as a tarball (oci-layout, index.json naming the
// image, a manifest, a config and one uncompressed layer), which
// `ctr -n k8s.io images import` takes as it is.
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

export const PAUSE_IMAGE = 'localhost/cm-csi-e2e/pause:1'
export const BUSYBOX_IMAGE = 'localhost/cm-csi-e2e/busybox:1'
export const BUSYBOX_BINARY = '/bin/busybox' // Debian's busybox-static

export interface BuiltImage {
  ref: string
  tarball: string
  /** sha256 of the manifest: what the runtime reports as the image's digest. */
  manifestDigest: string
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

// Reproducible tars: same input, same digest, run after run.
const TAR_FLAGS = ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '--format=posix', '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime']

interface ImageSpec {
  ref: string
  /** Fills the root filesystem directory. */
  rootfs: (dir: string) => void
  entrypoint: string[]
  cmd?: string[]
}

function buildImage(spec: ImageSpec, outDir: string): BuiltImage {
  const work = mkdtempSync(join(outDir, 'build-'))
  try {
    const rootfs = join(work, 'rootfs')
    mkdirSync(rootfs)
    spec.rootfs(rootfs)
    const layer = execFileSync('tar', ['-C', rootfs, ...TAR_FLAGS, '-cf', '-', '.'], { maxBuffer: 256 << 20 })

    const config = Buffer.from(JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {
        Entrypoint: spec.entrypoint,
        ...(spec.cmd ? { Cmd: spec.cmd } : {}),
        Env: ['PATH=/bin'],
        WorkingDir: '/',
      },
      rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
      history: [{ created_by: 'test/e2e/images.ts' }],
    }))
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
    }))
    const [, tag] = /:([^:/]+)$/.exec(spec.ref) ?? []
    const index = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: sha256(manifest),
        size: manifest.length,
        platform: { architecture: 'amd64', os: 'linux' },
        annotations: {
          // containerd names the imported image from this one...
          'io.containerd.image.name': spec.ref,
          // ...and other OCI tools from this one.
          'org.opencontainers.image.ref.name': tag ?? 'latest',
        },
      }],
    }))

    const layout = join(work, 'layout')
    const blobs = join(layout, 'blobs/sha256')
    mkdirSync(blobs, { recursive: true })
    for (const blob of [layer, config, manifest]) writeFileSync(join(blobs, sha256(blob).slice('sha256:'.length)), blob)
    writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
    writeFileSync(join(layout, 'index.json'), index)
    const name = spec.ref.replace(/^.*\//, '').replace(':', '-')
    const tarball = join(outDir, `${name}.oci.tar`)
    execFileSync('tar', ['-C', layout, ...TAR_FLAGS, '-cf', tarball, '.'])
    return { ref: spec.ref, tarball, manifestDigest: sha256(manifest) }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

/** Builds both images into outDir; returns them pause first. */
export function buildImages(outDir: string): BuiltImage[] {
  mkdirSync(outDir, { recursive: true })
  const pauseBin = join(outDir, 'pause')
  execFileSync('go', ['build', '-trimpath', '-ldflags=-s -w', '-o', pauseBin, '.'], {
    cwd: join(here, 'images/pause'),
    env: { ...process.env, CGO_ENABLED: '0' },
    stdio: ['ignore', 'inherit', 'inherit'],
  })
  const pause = buildImage({
    ref: PAUSE_IMAGE,
    rootfs: dir => {
      copyFileSync(pauseBin, join(dir, 'pause'))
      chmodSync(join(dir, 'pause'), 0o755)
    },
    entrypoint: ['/pause'],
  }, outDir)

  const applets = execFileSync(BUSYBOX_BINARY, ['--list'], { encoding: 'utf8' }).split('\n').filter(a => /^[\w.[-]+$/.test(a) && a !== 'busybox')
  const busybox = buildImage({
    ref: BUSYBOX_IMAGE,
    rootfs: dir => {
      for (const d of ['bin', 'tmp', 'etc', 'proc', 'sys', 'dev']) mkdirSync(join(dir, d))
      chmodSync(join(dir, 'tmp'), 0o1777)
      copyFileSync(BUSYBOX_BINARY, join(dir, 'bin/busybox'))
      chmodSync(join(dir, 'bin/busybox'), 0o755)
      for (const a of applets) symlinkSync('busybox', join(dir, 'bin', a))
      writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n')
      writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nnobody:x:65534:\n')
    },
    entrypoint: ['/bin/sh'],
  }, outDir)
  return [pause, busybox]
}

// node --import tsx test/e2e/images.ts <outDir>: build and print the tarballs.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = process.argv[2] ?? mkdtempSync('/tmp/cm-csi-e2e-images-')
  for (const img of buildImages(out)) console.log(`${img.ref} ${img.tarball} ${img.manifestDigest} (${readFileSync(img.tarball).length} bytes)`)
}
