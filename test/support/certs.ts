/**
 * Certificates made in the test with Debian's openssl CLI: a private test CA and server
 * certificates it signs (RSA or EC, any validity window, file with or without the chain). Clients
 * trust `ca.pem` explicitly, so nothing is ever disabled on the verifying side.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface IssuedCert {
  /** Server certificate followed by the CA (like certbot's fullchain.pem). */
  fullchain: string;
  /** Server certificate only (like certbot's cert.pem). */
  leaf: string;
  key: string;
  /** Upper-case hex, as X509Certificate#serialNumber and getPeerCertificate() give it. */
  serial: string;
}

export interface IssueOptions {
  keyType?: 'rsa' | 'ec';
  cn?: string;
  /** subjectAltName, default DNS:localhost,IP:127.0.0.1. */
  san?: string;
  days?: number;
  /** Fixed validity window (YYYYMMDDHHMMSSZ), e.g. for an expired certificate. */
  start?: string;
  end?: string;
}

const openssl = (args: string[], cwd: string) =>
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString('utf8');

export class TestCa {
  readonly caPem: string;
  private n = 0;

  constructor(readonly dir: string) {
    mkdirSync(join(dir, 'newcerts'), { recursive: true });
    writeFileSync(join(dir, 'index.txt'), '');
    writeFileSync(join(dir, 'serial'), '1000\n');
    writeFileSync(
      join(dir, 'ca.cnf'),
      [
        '[ ca ]',
        'default_ca = test_ca',
        '[ test_ca ]',
        `dir = ${dir}`,
        'database = $dir/index.txt',
        'new_certs_dir = $dir/newcerts',
        'certificate = $dir/ca.pem',
        'private_key = $dir/ca.key',
        'serial = $dir/serial',
        'default_md = sha256',
        'policy = policy_any',
        'unique_subject = no',
        'copy_extensions = copy',
        'email_in_dn = no',
        '[ policy_any ]',
        'commonName = supplied',
        '',
      ].join('\n'),
    );
    openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        'ca.key',
        '-out',
        'ca.pem',
        '-days',
        '3650',
        '-subj',
        '/CN=comfy-multi test CA',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
    this.caPem = readFileSync(join(dir, 'ca.pem'), 'utf8');
  }

  /** Issues a server certificate; files land in the CA's folder as `<name>.{pem,leaf.pem,key}`. */
  issue(name: string, opts: IssueOptions = {}): IssuedCert {
    const base = `${name}-${++this.n}`;
    const keyArgs =
      (opts.keyType ?? 'ec') === 'ec'
        ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']
        : ['-newkey', 'rsa:2048'];
    openssl(
      [
        'req',
        '-new',
        ...keyArgs,
        '-nodes',
        '-keyout',
        `${base}.key`,
        '-out',
        `${base}.csr`,
        '-subj',
        `/CN=${opts.cn ?? 'localhost'}`,
        '-addext',
        `subjectAltName=${opts.san ?? 'DNS:localhost,IP:127.0.0.1'}`,
      ],
      this.dir,
    );
    const validity =
      opts.start && opts.end
        ? ['-startdate', opts.start, '-enddate', opts.end]
        : ['-days', String(opts.days ?? 90)];
    openssl(
      [
        'ca',
        '-batch',
        '-notext',
        '-config',
        'ca.cnf',
        '-in',
        `${base}.csr`,
        '-out',
        `${base}.leaf.pem`,
        ...validity,
      ],
      this.dir,
    );
    const leafPem = readFileSync(join(this.dir, `${base}.leaf.pem`), 'utf8');
    writeFileSync(join(this.dir, `${base}.pem`), leafPem + this.caPem);
    const serial = openssl(['x509', '-in', `${base}.leaf.pem`, '-noout', '-serial'], this.dir)
      .trim()
      .replace(/^serial=/, '')
      .toUpperCase();
    return {
      fullchain: join(this.dir, `${base}.pem`),
      leaf: join(this.dir, `${base}.leaf.pem`),
      key: join(this.dir, `${base}.key`),
      serial,
    };
  }
}
