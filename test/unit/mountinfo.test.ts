import t from 'tap'
import { parseMountInfo, mountContaining, type MountInfo } from '../../src/host/mounts.js'

t.test('parses mountinfo lines', async (t) => {
  const cases: Array<{ name: string; line: string; want: Partial<MountInfo> }> = [
    {
      name: 'the proc(5) example, with an optional field',
      line: '36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
      want: {
        mountId: 36,
        parentId: 35,
        device: '98:0',
        root: '/mnt1',
        mountPoint: '/mnt2',
        options: ['rw', 'noatime'],
        optionalFields: ['master:1'],
        fsType: 'ext3',
        source: '/dev/root',
        superOptions: ['rw', 'errors=continue'],
      },
    },
    {
      name: 'no optional fields',
      line: '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard',
      want: { mountPoint: '/', optionalFields: [], fsType: 'ext4', source: '/dev/vda', superOptions: ['rw', 'discard'] },
    },
    {
      name: 'several optional fields',
      line: '120 25 0:50 / /var/lib/kubelet/pods/x rw shared:1 master:2 propagate_from:3 - tmpfs tmpfs rw,size=1024k,mode=700',
      want: { optionalFields: ['shared:1', 'master:2', 'propagate_from:3'], fsType: 'tmpfs', superOptions: ['rw', 'size=1024k', 'mode=700'] },
    },
    {
      name: 'escaped space, tab, newline and backslash',
      line: '50 27 0:39 /sub\\040dir /tmp/with\\040space\\011tab\\012nl\\134bs ro,relatime - tmpfs my\\040src rw',
      want: { root: '/sub dir', mountPoint: '/tmp/with space\ttab\nnl\\bs', source: 'my src', options: ['ro', 'relatime'] },
    },
    {
      name: 'a bind mount of a subdirectory shows the subdirectory as root',
      line: '60 27 254:0 /srv/data /mnt/bind rw,relatime - ext4 /dev/vda rw',
      want: { root: '/srv/data', mountPoint: '/mnt/bind', device: '254:0' },
    },
    {
      name: 'a "-" as source is not taken for the separator',
      line: '70 27 0:40 / /mnt/x rw - fuse.sshfs - rw,user_id=0',
      want: { fsType: 'fuse.sshfs', source: '-', superOptions: ['rw', 'user_id=0'] },
    },
    {
      name: 'missing super options',
      line: '71 27 0:41 / /mnt/y rw - tmpfs tmpfs',
      want: { fsType: 'tmpfs', source: 'tmpfs', superOptions: [] },
    },
  ]
  for (const c of cases) {
    const got = parseMountInfo(c.line + '\n')
    t.equal(got.length, 1, `${c.name}: one mount`)
    t.match(got[0], c.want, c.name)
  }
})

t.test('skips blank and malformed lines', async (t) => {
  const text = [
    '',
    '1 2 3',
    'x y 0:1 / /a rw - tmpfs tmpfs rw',
    '36 35 98:0 /mnt1 /mnt2 rw,noatime no-separator ext3 /dev/root rw',
    '36 35 98:0 / /ok rw - tmpfs tmpfs rw',
    '37 35 98:0 / /cut rw -',
    '   ',
  ].join('\n')
  t.same(parseMountInfo(text).map((m) => m.mountPoint), ['/ok'])
})

t.test('parses this machine\'s own mountinfo', async (t) => {
  const { readFile } = await import('node:fs/promises')
  const mounts = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'))
  t.ok(mounts.some((m) => m.mountPoint === '/'), 'has a root mount')
  t.ok(mounts.some((m) => m.mountPoint === '/proc' && m.fsType === 'proc'), 'has /proc')
})

t.test('mountContaining picks the longest prefix, newest on top', async (t) => {
  const mounts = parseMountInfo(
    [
      '1 0 0:1 / / rw - ext4 /dev/vda rw',
      '2 1 0:2 / /data rw - tmpfs tmpfs rw',
      '3 2 0:3 / /data/vol rw - ext4 /dev/vdb rw',
      '4 3 0:4 / /data/vol rw - tmpfs tmpfs rw',
      '5 1 0:5 / /dat rw - xfs /dev/vdc rw',
    ].join('\n'),
  )
  const at = (p: string) => mountContaining(mounts, p)?.mountId
  t.equal(at('/'), 1)
  t.equal(at('/etc/passwd'), 1)
  t.equal(at('/data'), 2)
  t.equal(at('/data/x'), 2)
  t.equal(at('/data/vol'), 4, 'the one on top of a stack')
  t.equal(at('/data/vol/a/b'), 4)
  t.equal(at('/datafile'), 1, 'a string prefix is not a path prefix')
  t.equal(at('/dat/x'), 5)
  t.equal(mountContaining([], '/x'), undefined)
  const reordered = parseMountInfo(['9 8 0:9 / /s rw - tmpfs top rw', '8 1 0:8 / /s rw - ext4 below rw'].join('\n'))
  t.equal(mountContaining(reordered, '/s/f')?.source, 'top', 'the top of a stack, even when listed first')
})
