import t from 'tap'
import { FlagError } from '../../src/errors.js'
import { parseBindAddress } from '../../src/cli/bind-address.js'

t.test('parseBindAddress', async (t) => {
  const ok: Array<[string, { host: string; port: number } | null]> = [
    ['0', null],
    [' 0 ', null],
    [':9402', { host: '', port: 9402 }],
    [':0', { host: '', port: 0 }],
    ['127.0.0.1:9402', { host: '127.0.0.1', port: 9402 }],
    ['0.0.0.0:9402', { host: '0.0.0.0', port: 9402 }],
    ['localhost:8080', { host: 'localhost', port: 8080 }],
    ['metrics.node-1.local:65535', { host: 'metrics.node-1.local', port: 65535 }],
    ['[::1]:9402', { host: '::1', port: 9402 }],
    ['[::]:0', { host: '::', port: 0 }],
    ['[fe80::1%eth0]:9402', { host: 'fe80::1%eth0', port: 9402 }],
  ]
  for (const [input, want] of ok) t.same(parseBindAddress(input), want, JSON.stringify(input))

  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    ['9402', /missing port/],
    ['localhost', /missing port/],
    [':', /port "" must be a number/],
    [':65536', /port "65536" must be a number from 0 to 65535/],
    [':99999999', /port "99999999"/],
    [':-1', /port "-1"/],
    [':http', /port "http"/],
    ['127.0.0.1:', /port ""/],
    ['::1:9402', /IPv6 address must be in brackets/],
    ['[::1:9402', /IPv6 address must be in brackets|unclosed/],
    ['[::1]9402:', /port ""/],
    ['[127.0.0.1]:9402', /"127.0.0.1" is not an IPv6 address/],
    ['[nope]:9402', /not an IPv6 address/],
    ['bad_host:9402', /"bad_host" is not an IPv4 address or a host name/],
    ['-x:9402', /not an IPv4 address or a host name/],
    ['a b:9402', /not an IPv4 address or a host name/],
  ]
  for (const [input, re] of bad) {
    t.throws(() => parseBindAddress(input), re, JSON.stringify(input))
    try {
      parseBindAddress(input)
    } catch (err) {
      t.type(err, FlagError)
      t.match((err as Error).message, `bind address "${input}"`)
    }
  }
})
