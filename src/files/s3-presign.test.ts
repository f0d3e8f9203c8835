import { describe, expect, it } from 'vitest';
import { encodeKeyPath, objectUrl, presignUrl } from './s3-presign.js';

describe('SigV4 presigned URLs', () => {
  it('matches the worked example of the AWS documentation', () => {
    // "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)", example GET.
    const url = presignUrl({
      method: 'GET',
      url: 'https://examplebucket.s3.amazonaws.com/test.txt',
      region: 'us-east-1',
      credentials: {
        accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
        secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      },
      expiresSec: 86400,
      now: new Date('2013-05-24T00:00:00Z'),
    });
    expect(url).toBe(
      'https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256' +
        '&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request' +
        '&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host' +
        '&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404',
    );
  });

  it('encodes keys segment by segment and builds path-style and virtual-hosted URLs', () => {
    expect(encodeKeyPath("a b/ü (1)+#&'!.png")).toBe('a%20b/%C3%BC%20%281%29%2B%23%26%27%21.png');
    const key = 'user001/output/x y.png';
    expect(
      objectUrl({
        endpoint: 'http://127.0.0.1:9000',
        region: 'auto',
        forcePathStyle: true,
        bucket: 'b',
        key,
      }),
    ).toBe('http://127.0.0.1:9000/b/user001/output/x%20y.png');
    expect(
      objectUrl({
        endpoint: 'https://acc.r2.cloudflarestorage.com',
        region: 'auto',
        forcePathStyle: false,
        bucket: 'b',
        key,
      }),
    ).toBe('https://b.acc.r2.cloudflarestorage.com/user001/output/x%20y.png');
    expect(objectUrl({ region: 'eu-central-1', forcePathStyle: false, bucket: 'b', key })).toBe(
      'https://b.s3.eu-central-1.amazonaws.com/user001/output/x%20y.png',
    );
  });

  it('carries a session token and refuses expiries outside 1 s … 7 days', () => {
    const base = {
      method: 'PUT' as const,
      url: 'https://b.s3.amazonaws.com/k',
      region: 'us-east-1',
      credentials: { accessKeyId: 'A', secretAccessKey: 'S', sessionToken: 'tok/en+=' },
    };
    expect(presignUrl({ ...base, expiresSec: 60 })).toContain('X-Amz-Security-Token=tok%2Fen%2B%3D');
    expect(() => presignUrl({ ...base, expiresSec: 0 })).toThrow(RangeError);
    expect(() => presignUrl({ ...base, expiresSec: 604_801 })).toThrow(RangeError);
  });
});
