// Loads proto/csi.proto at run time with the same options the committed
// types in ./generated were produced with (package.json "gen:proto").

import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { loadPackageDefinition } from '@grpc/grpc-js'
import { loadSync, type Options } from '@grpc/proto-loader'
import type { ProtoGrpcType } from './generated/csi.js'

export const PROTO_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
}

/**
 * proto/ sits at the package root. From src/csi/ (tsx) that is two levels up,
 * from dist/src/csi/ (compiled) three: try both rather than depend on how
 * the driver was started.
 */
export function protoPath(): string {
  const candidates = ['../../proto/csi.proto', '../../../proto/csi.proto'].map((rel) =>
    fileURLToPath(new URL(rel, import.meta.url)),
  )
  const found = candidates.find((p) => existsSync(p))
  if (found === undefined) throw new Error(`proto/csi.proto not found; looked at ${candidates.join(', ')}`)
  return found
}

export function loadCsiProto(path: string = protoPath()): ProtoGrpcType['csi']['v1'] {
  const def = loadSync(path, PROTO_LOADER_OPTIONS)
  return (loadPackageDefinition(def) as unknown as ProtoGrpcType).csi.v1
}
