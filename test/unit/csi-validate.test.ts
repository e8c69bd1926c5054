import t from 'tap'
import { ErrorCode, InvalidArgumentError, type DriverError } from '../../src/errors.js'
import type { NodePublishVolumeRequest__Output } from '../../src/csi/generated/csi/v1/NodePublishVolumeRequest.js'
import { userAttributes, validatePublishRequest, validateUnpublishRequest, type AttributeParser } from '../../src/csi/validate.js'
import type { PodInfo, VolumeSpec } from '../../src/volume/types.js'
import { catchErr } from '../helpers/catch.js'

const POD_CONTEXT = {
  'csi.storage.k8s.io/pod.name': 'app-0',
  'csi.storage.k8s.io/pod.namespace': 'team-a',
  'csi.storage.k8s.io/pod.uid': '5f1f6c2e-0000-4000-8000-000000000001',
  'csi.storage.k8s.io/serviceAccount.name': 'app',
  'csi.storage.k8s.io/ephemeral': 'true',
}
const ATTRS = { 'csi.cert-manager.io/issuer-name': 'ca-issuer', 'csi.cert-manager.io/dns-names': 'example.com' }

// What the kubelet sends for an inline ephemeral volume with readOnly: true.
function kubeletRequest(over: Partial<NodePublishVolumeRequest__Output> = {}): NodePublishVolumeRequest__Output {
  return {
    volume_id: 'csi-0123456789abcdef',
    publish_context: {},
    staging_target_path: '',
    target_path: `/var/lib/kubelet/pods/${POD_CONTEXT['csi.storage.k8s.io/pod.uid']}/volumes/kubernetes.io~csi/tls/mount`,
    volume_capability: { mount: { fs_type: '', mount_flags: [], volume_mount_group: '' }, access_mode: { mode: 'SINGLE_NODE_WRITER' }, access_type: 'mount' },
    readonly: true,
    secrets: {},
    volume_context: { ...ATTRS, ...POD_CONTEXT },
    ...over,
  }
}

const FAKE_SPEC = { issuer: { name: 'ca-issuer', kind: 'Issuer', group: 'cert-manager.io' } } as VolumeSpec
const seen: Array<{ attributes: Record<string, string>; pod: PodInfo }> = []
const okParser: AttributeParser = (attributes, pod) => {
  seen.push({ attributes, pod })
  return { ok: true, spec: FAKE_SPEC }
}

t.test('a kubelet request passes and carries pod, spec and the user attributes', async (t) => {
  seen.length = 0
  const tokens = JSON.stringify({ '': { token: 'secret-token', expirationTimestamp: 'x' } })
  const r = validatePublishRequest(
    kubeletRequest({ volume_context: { ...ATTRS, ...POD_CONTEXT, 'csi.storage.k8s.io/serviceAccount.tokens': tokens } }),
    okParser,
  )
  t.same(r, {
    volumeId: 'csi-0123456789abcdef',
    targetPath: `/var/lib/kubelet/pods/${POD_CONTEXT['csi.storage.k8s.io/pod.uid']}/volumes/kubernetes.io~csi/tls/mount`,
    readonly: true,
    pod: { name: 'app-0', namespace: 'team-a', uid: '5f1f6c2e-0000-4000-8000-000000000001', serviceAccountName: 'app' },
    attributes: ATTRS,
  })
  t.same(seen[0]?.attributes, ATTRS, 'the parser never sees csi.storage.k8s.io/ keys (the token least of all)')
})

t.test('the kubelet\'s volume_mount_group reaches the parser and the request as a number', async (t) => {
  const groups: Array<number | undefined> = []
  const parser: AttributeParser = (_a, _p, mountGroup) => {
    groups.push(mountGroup)
    return { ok: true, spec: FAKE_SPEC }
  }
  const withGroup = (group: string) => kubeletRequest({ volume_capability: { mount: { fs_type: '', mount_flags: [], volume_mount_group: group }, access_mode: { mode: 'SINGLE_NODE_WRITER' }, access_type: 'mount' } })
  t.equal(validatePublishRequest(withGroup('2000'), parser).mountGroup, 2000)
  t.equal(validatePublishRequest(withGroup('0'), parser).mountGroup, 0, 'group 0 is a group')
  t.notOk('mountGroup' in validatePublishRequest(withGroup(''), parser), 'none sent: none recorded')
  t.same(groups, [2000, 0, undefined])
  for (const bad of ['abc', '-1', '2147483648', '01', '1e3', ' 5']) {
    const err = catchErr(() => validatePublishRequest(withGroup(bad), parser)) as DriverError
    t.ok(err instanceof InvalidArgumentError, `${JSON.stringify(bad)}: INVALID_ARGUMENT`)
    t.match(err.message, /^volume_capability\.mount\.volume_mount_group ".*" is not a group id: the kubelet sends the pod's securityContext\.fsGroup/)
  }
  t.equal(groups.length, 3, 'a bad group is refused before the attributes are parsed')
})

t.test('a pod without a service account is accepted: the name only feeds ${SERVICE_ACCOUNT_NAME}', async (t) => {
  seen.length = 0
  const { 'csi.storage.k8s.io/serviceAccount.name': _sa, ...ctx } = POD_CONTEXT
  const r = validatePublishRequest(kubeletRequest({ volume_context: { ...ATTRS, ...ctx } }), okParser)
  t.equal(r.pod.serviceAccountName, '', 'empty, not refused')
  t.equal(seen[0]?.pod.serviceAccountName, '', 'the parser sees it empty and refuses only a ${SERVICE_ACCOUNT_NAME} it cannot fill')
})

t.test('every single-node access mode is accepted', async (t) => {
  for (const mode of ['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_SINGLE_WRITER', 'SINGLE_NODE_MULTI_WRITER'] as const) {
    const req = kubeletRequest()
    req.volume_capability = { mount: { fs_type: '', mount_flags: [], volume_mount_group: '' }, access_mode: { mode }, access_type: 'mount' }
    t.doesNotThrow(() => validatePublishRequest(req, okParser), mode)
  }
})

t.test('publish rejections', async (t) => {
  const mount = { fs_type: '', mount_flags: [], volume_mount_group: '' }
  const ctxWithout = (...keys: string[]) => Object.fromEntries(Object.entries({ ...ATTRS, ...POD_CONTEXT }).filter(([k]) => !keys.includes(k)))
  const cases: Array<{ name: string; req: Partial<NodePublishVolumeRequest__Output>; code: string; msg: RegExp }> = [
    { name: 'no volume id', req: { volume_id: '' }, code: ErrorCode.INVALID_ARGUMENT, msg: /^volume_id is required$/ },
    { name: 'volume id with a slash', req: { volume_id: '../../etc' }, code: ErrorCode.INVALID_ARGUMENT, msg: /volume_id "..\/..\/etc" is not valid/ },
    { name: 'volume id ..', req: { volume_id: '..' }, code: ErrorCode.INVALID_ARGUMENT, msg: /is not valid/ },
    { name: 'a 20 KB volume id is refused on its length, not quoted back', req: { volume_id: '/..'.repeat(7000) }, code: ErrorCode.INVALID_ARGUMENT, msg: /^volume_id is 21000 characters long; at most 256 are allowed$/ },
    { name: 'no target path', req: { target_path: '' }, code: ErrorCode.INVALID_ARGUMENT, msg: /^target_path is required$/ },
    { name: 'relative target path', req: { target_path: 'pods/x/mount' }, code: ErrorCode.INVALID_ARGUMENT, msg: /target_path "pods\/x\/mount" must be an absolute path/ },
    { name: 'no capability', req: { volume_capability: null }, code: ErrorCode.INVALID_ARGUMENT, msg: /^volume_capability is required$/ },
    {
      name: 'block access',
      req: { volume_capability: { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' }, access_type: 'block' } },
      code: ErrorCode.INVALID_ARGUMENT,
      msg: /block access is not supported: csi.cert-manager.io provides files/,
    },
    {
      name: 'no access type',
      req: { volume_capability: { access_mode: { mode: 'SINGLE_NODE_WRITER' } } },
      code: ErrorCode.INVALID_ARGUMENT,
      msg: /must request mount access/,
    },
    {
      name: 'multi-node access',
      req: { volume_capability: { mount, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' }, access_type: 'mount' } },
      code: ErrorCode.INVALID_ARGUMENT,
      msg: /access mode MULTI_NODE_MULTI_WRITER is not supported/,
    },
    {
      name: 'no access mode',
      req: { volume_capability: { mount, access_mode: null, access_type: 'mount' } },
      code: ErrorCode.INVALID_ARGUMENT,
      msg: /access mode UNKNOWN is not supported/,
    },
    {
      name: 'persistent volume (ephemeral false)',
      req: { volume_context: { ...ATTRS, ...POD_CONTEXT, 'csi.storage.k8s.io/ephemeral': 'false' } },
      code: ErrorCode.INVALID_ARGUMENT,
      msg: /^csi.cert-manager.io only supports inline ephemeral volumes: declare it under pod.spec.volumes\[\].csi, not in a PersistentVolume$/,
    },
    {
      name: 'ephemeral flag missing but pod info present',
      req: { volume_context: ctxWithout('csi.storage.k8s.io/ephemeral') },
      code: ErrorCode.INVALID_ARGUMENT,
      msg: /only supports inline ephemeral volumes/,
    },
    {
      name: 'no pod info at all (podInfoOnMount false)',
      req: { volume_context: { ...ATTRS } },
      code: ErrorCode.FAILED_PRECONDITION,
      msg: /needs podInfoOnMount: true/,
    },
    { name: 'writable', req: { readonly: false }, code: ErrorCode.INVALID_ARGUMENT, msg: /^set readOnly: true on the csi volume in the pod spec$/ },
    {
      name: 'pod uid missing',
      req: { volume_context: ctxWithout('csi.storage.k8s.io/pod.uid') },
      code: ErrorCode.FAILED_PRECONDITION,
      msg: /missing csi.storage.k8s.io\/pod.uid\).*podInfoOnMount: true/,
    },
  ]
  for (const c of cases) {
    const err = catchErr(() => validatePublishRequest(kubeletRequest(c.req), okParser)) as DriverError | undefined
    t.equal(err?.code, c.code, `${c.name}: ${c.code}`)
    t.match(err?.message, c.msg, c.name)
  }
})

t.test('attribute issues become one INVALID_ARGUMENT naming each attribute', async (t) => {
  const issues = [
    { attribute: 'csi.cert-manager.io/duration', code: 'invalid-duration', message: '"soon" is not a duration' },
    { attribute: 'csi.cert-manager.io/key-size', code: 'invalid-key-size', message: 'must be 2048, 3072 or 4096 for RSA' },
  ]
  const err = catchErr(() => validatePublishRequest(kubeletRequest(), () => ({ ok: false, issues })))
  t.type(err, InvalidArgumentError)
  t.equal(
    (err as InvalidArgumentError).message,
    'csi.cert-manager.io/duration: "soon" is not a duration; csi.cert-manager.io/key-size: must be 2048, 3072 or 4096 for RSA',
  )
  t.same((err as InvalidArgumentError).issues, issues)
})

t.test('argument checks come before attribute parsing', async (t) => {
  let called = false
  const parser: AttributeParser = () => {
    called = true
    return { ok: true, spec: FAKE_SPEC }
  }
  catchErr(() => validatePublishRequest(kubeletRequest({ readonly: false }), parser))
  t.notOk(called)
})

t.test('unpublish', async (t) => {
  t.same(validateUnpublishRequest({ volume_id: 'v', target_path: '/t' }), { volumeId: 'v', targetPath: '/t' })
  const cases = [
    { name: 'no volume id', req: { volume_id: '', target_path: '/t' }, msg: /^volume_id is required$/ },
    { name: 'no target path', req: { volume_id: 'v', target_path: '' }, msg: /^target_path is required$/ },
    { name: 'relative target path', req: { volume_id: 'v', target_path: 't' }, msg: /must be an absolute path/ },
    { name: 'volume id with a slash', req: { volume_id: 'a/b', target_path: '/t' }, msg: /is not valid/ },
  ]
  for (const c of cases) {
    const err = catchErr(() => validateUnpublishRequest(c.req)) as DriverError | undefined
    t.equal(err?.code, ErrorCode.INVALID_ARGUMENT, c.name)
    t.match(err?.message, c.msg, c.name)
  }
})

t.test('userAttributes drops exactly the kubelet prefix', async (t) => {
  t.same(userAttributes({ ...ATTRS, ...POD_CONTEXT, 'example.com/team': 'a', 'csi.storage.k8s.io.example/x': 'kept' }), {
    ...ATTRS,
    'example.com/team': 'a',
    'csi.storage.k8s.io.example/x': 'kept',
  })
})

t.test('thousands of issues in one value: the status names the first 20 and counts the rest', async (t) => {
  const { parseVolumeAttributes } = await import('../../src/volume/spec.js')
  const value = Array.from({ length: 2000 }, (_, i) => `\${X${i}}`).join('')
  const err = catchErr(() => validatePublishRequest(kubeletRequest({ volume_context: { ...POD_CONTEXT, ...ATTRS, 'csi.cert-manager.io/common-name': value } }), (a, p) => parseVolumeAttributes(a, p))) as DriverError
  t.ok(err instanceof InvalidArgumentError, 'INVALID_ARGUMENT')
  t.match(err.message, /^csi\.cert-manager\.io\/common-name: unknown variable \$\{X0\}/)
  t.match(err.message, /; and 1980 more$/, 'the rest counted, not listed (2000 unknown variables, 20 shown)')
  t.ok(err.message.length < 8 * 1024, `the message fits a gRPC status header (${err.message.length} characters)`)
})

t.test('targets are confined to the pod\'s own volume folders under the kubelet root', async (t) => {
  const uid = POD_CONTEXT['csi.storage.k8s.io/pod.uid']
  const ok = (target: string, root = '/var/lib/kubelet') => validatePublishRequest(kubeletRequest({ target_path: target }), okParser, { driverName: 'csi.cert-manager.io', kubeletRootDir: root }).targetPath
  t.equal(ok(`/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~csi/tls/mount`), `/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~csi/tls/mount`)
  t.equal(ok(`/data/k/pods/${uid}/volumes/kubernetes.io~csi/tls/mount`, '/data/k/'), `/data/k/pods/${uid}/volumes/kubernetes.io~csi/tls/mount`, 'another --kubelet-root-dir')
  const refused: Array<[string, string, RegExp]> = [
    ['a host directory', '/etc/ssl', /is not under the kubelet's root \/var\/lib\/kubelet/],
    ['the kubelet root itself', '/var/lib/kubelet/', /is not a pod volume mount point/],
    ['a sibling folder sharing the prefix', `/var/lib/kubeletx/pods/${uid}/volumes/kubernetes.io~csi/tls/mount`, /not under the kubelet's root/],
    ['another pod\'s volume', '/var/lib/kubelet/pods/0000-other/volumes/kubernetes.io~csi/tls/mount', /belongs to pod "0000-other", not to the pod in the volume context/],
    ['dot-dot out of the pod', `/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~csi/../../../../../etc/mount`, /is not a pod volume mount point/],
    ['dot-dot as the volume name', `/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~csi/../mount`, /names volume "\.\.", which is not a pod volume name/],
    ['a volume name no pod can have', `/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~csi/TLS_\${x}/mount`, /names volume "TLS_\$\{x\}", which is not a pod volume name \(a DNS-1123 label\)/],
    ['another plugin\'s folder', `/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~secret/tls/mount`, /is not a pod volume mount point/],
    ['not the mount folder', `/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~csi/tls`, /is not a pod volume mount point/],
    ['deeper than the mount folder', `/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~csi/tls/mount/x`, /is not a pod volume mount point/],
    ['a double slash', `/var/lib/kubelet/pods/${uid}//volumes/kubernetes.io~csi/tls/mount`, /is not a pod volume mount point/],
  ]
  for (const [name, target, msg] of refused) {
    const err = catchErr(() => ok(target)) as DriverError
    t.equal(err?.code, ErrorCode.INVALID_ARGUMENT, `${name}: INVALID_ARGUMENT`)
    t.match(err?.message, msg, name)
    t.match(err?.message, new RegExp(`the kubelet mounts this pod's volumes at /var/lib/kubelet/pods/${uid}/`), `${name}: says where targets go`)
  }
  const long = catchErr(() => ok(`/var/lib/kubelet/${'x'.repeat(5000)}`)) as DriverError
  t.match(long?.message, /target_path is 5017 characters long; at most 4096/)
})
