// A fake S3-compatible object store for the suites (what MinIO or AWS S3
// answer a path-style client): PUT and GET of objects, every request
// checked with AWS Signature Version 4 as S3 checks it.  Started from Perl
// by Orbit::Fake->start('s3') (t/lib/Orbit/Fake.pm); the recording,
// forced answers, delay and emit are fake-common.js's, documented there.
//
// S3, as the fake answers it:
//   PUT /BUCKET/KEY  Authorization: AWS4-HMAC-SHA256 Credential=AK/DATE/
//     REGION/s3/aws4_request, SignedHeaders=..., Signature=...;
//     x-amz-date; x-amz-content-sha256 the hex SHA-256 of the body (or
//     UNSIGNED-PAYLOAD).  Checked: the key pair and region configured, the
//     signature recomputed from the request as it came (method, path,
//     sorted query, the signed headers), the payload hash against the
//     body, x-amz-date within 15 minutes, the bucket known.  200 with an
//     ETag; the object kept with its Content-Type.
//   GET /BUCKET/KEY  either signed the same way, or presigned
//     (X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires,
//     X-Amz-SignedHeaders, X-Amz-Signature in the query, UNSIGNED-PAYLOAD)
//     and not expired: the bytes with their Content-Type; unknown: 404.
//   Refusals are S3's XML errors: 403 SignatureDoesNotMatch,
//   InvalidAccessKeyId, AccessDenied (expired: "Request has expired"),
//   RequestTimeTooSkewed, XAmzContentSHA256Mismatch (400), 404
//   NoSuchBucket / NoSuchKey.
// Outcomes of calls: put, get, denied, missing (and forced, hang, close).
// A denied call also has "reason".
//
// Control, besides fake-common.js's:
//   POST /__control/s3 {"accessKeyId","secretAccessKey","region",
//        "buckets":["name",...]}   -> the same
//   GET  /__control/objects  {"objects":{"BUCKET/KEY":{"size","sha256",
//        "contentType"}}}
'use strict';

const crypto = require('crypto');
const { Fake, json } = require('./fake-common');

let conf, objects;

const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');
const hmac = (k, s) => crypto.createHmac('sha256', k).update(s).digest();

function xmlError(status, code, message, outcome, reason) {
    return {
        status, outcome: outcome || 'denied', reason: reason || message,
        headers: { 'Content-Type': 'application/xml' },
        body: '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
            + code + '</Code><Message>' + message + '</Message></Error>',
    };
}

// AWS's URI encoding: all but A-Z a-z 0-9 - _ . ~ (and "/" in paths)
function enc(s, path) {
    return Buffer.from(s, 'utf8').toString('binary').replace(
        /[^A-Za-z0-9\-_.~\/]|\//g, (c) => (path && c === '/') ? c
            : '%' + c.charCodeAt(0).toString(16).toUpperCase()
                .padStart(2, '0'));
}

function canonicalQuery(params) {
    return params.map(([k, v]) => [enc(k), enc(v)])
        .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1
                         : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
        .map(([k, v]) => `${k}=${v}`).join('&');
}

function signature(date, region, canonical) {
    const scope = `${date.slice(0, 8)}/${region}/s3/aws4_request`;
    const sts = ['AWS4-HMAC-SHA256', date, scope, sha256(canonical)]
        .join('\n');
    let k = hmac('AWS4' + conf.secretAccessKey, date.slice(0, 8));
    k = hmac(k, region);
    k = hmac(k, 's3');
    k = hmac(k, 'aws4_request');
    return crypto.createHmac('sha256', k).update(sts).digest('hex');
}

function amzTime(d) {
    const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(d || '');
    return m ? Date.UTC(+m[1], m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000
             : null;
}

// checks a request's SigV4; returns an error answer or null
function verify(req, raw, rawPath, params) {
    if (!conf) return xmlError(403, 'AccessDenied', 'No key pair configured');
    const q = Object.fromEntries(params);
    const presigned = q['X-Amz-Algorithm'] !== undefined;
    let cred, signedHeaders, sig, date, payload;

    if (presigned) {
        if (q['X-Amz-Algorithm'] !== 'AWS4-HMAC-SHA256') {
            return xmlError(400, 'AuthorizationQueryParametersError',
                            'X-Amz-Algorithm only supports AWS4-HMAC-SHA256');
        }
        cred = q['X-Amz-Credential'];
        signedHeaders = q['X-Amz-SignedHeaders'];
        sig = q['X-Amz-Signature'];
        date = q['X-Amz-Date'];
        payload = 'UNSIGNED-PAYLOAD';
        const t = amzTime(date);
        const exp = Number(q['X-Amz-Expires']);
        if (t === null || !(exp >= 1 && exp <= 604800)) {
            return xmlError(400, 'AuthorizationQueryParametersError',
                            'X-Amz-Date or X-Amz-Expires is invalid');
        }
        if (Date.now() / 1000 > t + exp) {
            return xmlError(403, 'AccessDenied', 'Request has expired');
        }
        params = params.filter(([k]) => k !== 'X-Amz-Signature');
    } else {
        const m = /^AWS4-HMAC-SHA256 Credential=([^,]+),\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]+)$/
            .exec(req.headers.authorization || '');
        if (!m) {
            return xmlError(403, 'AccessDenied',
                            'Missing or malformed Authorization');
        }
        [, cred, signedHeaders, sig] = m;
        date = req.headers['x-amz-date'];
        payload = req.headers['x-amz-content-sha256'];
        const t = amzTime(date);
        if (t === null || Math.abs(Date.now() / 1000 - t) > 900) {
            return xmlError(403, 'RequestTimeTooSkewed',
                            'The difference between the request time and '
                            + 'the current time is too large.');
        }
        if (!payload) {
            return xmlError(400, 'InvalidRequest',
                            'Missing required header x-amz-content-sha256');
        }
        if (payload !== 'UNSIGNED-PAYLOAD' && payload !== sha256(raw)) {
            return xmlError(400, 'XAmzContentSHA256Mismatch',
                            'The provided x-amz-content-sha256 header does '
                            + 'not match what was computed.');
        }
    }

    const c = (cred || '').split('/');
    if (c.length !== 5 || c[0] !== conf.accessKeyId) {
        return xmlError(403, 'InvalidAccessKeyId', 'The AWS Access Key Id '
                        + 'you provided does not exist in our records.');
    }
    if (c[1] !== (date || '').slice(0, 8) || c[2] !== conf.region
        || c[3] !== 's3' || c[4] !== 'aws4_request') {
        return xmlError(403, 'SignatureDoesNotMatch',
                        'The credential scope is wrong', 'denied',
                        `scope ${cred}`);
    }
    const names = (signedHeaders || '').split(';');
    if (!names.includes('host')) {
        return xmlError(403, 'AccessDenied', 'host must be signed');
    }
    const headers = names.map((n) => {
        const v = req.headers[n];
        return `${n}:${(Array.isArray(v) ? v.join(',') : v || '')
            .trim().replace(/\s+/g, ' ')}\n`;
    }).join('');
    const canonical = [req.method, rawPath, canonicalQuery(params), headers,
                       signedHeaders, payload].join('\n');
    const want = signature(date, conf.region, canonical);
    if (!sig || sig.length !== want.length
        || !crypto.timingSafeEqual(Buffer.from(sig), Buffer.from(want))) {
        return xmlError(403, 'SignatureDoesNotMatch', 'The request '
                        + 'signature we calculated does not match the '
                        + 'signature you provided.', 'denied',
                        'signature: ' + JSON.stringify(canonical));
    }
    return null;
}

function handle(call, req, raw) {
    const u = new URL(req.url, 'http://fake');
    const rawPath = req.url.split('?')[0];
    const params = [...u.searchParams.entries()];
    const bad = verify(req, raw, rawPath, params);
    if (bad) return bad;

    const m = /^\/([^/]+)\/(.+)$/.exec(decodeURIComponent(rawPath));
    if (!m) return xmlError(400, 'InvalidRequest', 'Path-style only');
    const [, bucket, key] = m;
    if (!conf.buckets.includes(bucket)) {
        return xmlError(404, 'NoSuchBucket',
                        'The specified bucket does not exist', 'missing');
    }
    const name = `${bucket}/${key}`;

    if (req.method === 'PUT') {
        const etag = '"' + crypto.createHash('md5').update(raw).digest('hex')
                   + '"';
        objects.set(name, { bytes: raw, etag,
                            contentType: req.headers['content-type']
                                || 'binary/octet-stream' });
        return { status: 200, body: '', headers: { ETag: etag },
                 outcome: 'put' };
    }
    if (req.method === 'GET') {
        const o = objects.get(name);
        if (!o) {
            return xmlError(404, 'NoSuchKey',
                            'The specified key does not exist.', 'missing');
        }
        return { status: 200, body: o.bytes, outcome: 'get',
                 headers: { 'Content-Type': o.contentType, ETag: o.etag } };
    }
    return xmlError(405, 'MethodNotAllowed',
                    'The specified method is not allowed', 'denied');
}

new Fake({
    name: 's3',
    userAgent: 'orbit-fake-s3',
    handle,
    reset() {
        conf = null;
        objects = new Map();
    },
    control: {
        'POST s3': (b) => {
            if (typeof b.accessKeyId !== 'string'
                || typeof b.secretAccessKey !== 'string'
                || typeof b.region !== 'string'
                || !Array.isArray(b.buckets)) {
                return json(400, { error: 'accessKeyId, secretAccessKey, '
                                   + 'region and buckets are required' });
            }
            conf = { accessKeyId: b.accessKeyId,
                     secretAccessKey: b.secretAccessKey, region: b.region,
                     buckets: b.buckets };
            return json(200, conf);
        },
        'GET objects': () => json(200, { objects: Object.fromEntries(
            [...objects].map(([k, o]) => [k, { size: o.bytes.length,
                sha256: sha256(o.bytes), contentType: o.contentType }])) }),
    },
}).listen();
