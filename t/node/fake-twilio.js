// A fake Twilio Programmable Messaging API for the suites: the shapes of
// ../shared/PROTOCOLS.md section 4.  Started from Perl by
// Orbit::Fake->start('twilio') (helpers: t/lib/Orbit/FakeTwilio.pm); the
// recording, forced answers and delay are fake-common.js's, documented
// there.
//
// The API, as the fake answers it:
//   POST /2010-04-01/Accounts/AC.../Messages.json, HTTP Basic auth: the
//     account's SID and auth token, or an API key's SID and secret of that
//     account; else 401 {"code":20003,"message":"Authenticate",...}.
//     Content-Type application/x-www-form-urlencoded.  Checked: To E.164
//     (21211), From E.164 or MessagingServiceSid MG... (21603 none, 21212
//     bad), Body or MediaUrl (21602), Body at most 1600 characters
//     (21617), each MediaUrl and StatusCallback an http(s) URL (21620,
//     21609).  Sent: 201 {"sid":"SM<32 hex>","status":"queued",
//     "account_sid","to","from","messaging_service_sid","body",
//     "num_media","num_segments","date_created","uri",...}.
//     Errors are Twilio's {"code","message","more_info","status"}.
//   GET /2010-04-01/Accounts/AC.../Messages/MM.../Media/ME... (Basic auth
//     of that account): as Twilio does, 307 with a Location on "S3", a
//     short-lived URL of the fake: /s3/<random>?X-Amz-Algorithm=...&
//     X-Amz-Expires=60&X-Amz-Signature=<hex> (outcome "redirect").
//   GET /s3/<random>?...: the bytes registered with /__control/media and
//     their Content-Type (outcome "media"); as S3 does, 400 InvalidArgument
//     "Only one auth mechanism allowed" when an Authorization header came
//     besides the URL's signature (outcome "s3-auth"), 403 AccessDenied
//     for another signature or after 60 s (outcome "s3-denied").
//   anything else: 404 code 20404.
// Outcomes of calls: sent, unauthorized, invalid, redirect, media,
// s3-auth, s3-denied, unknown (and forced, hang, close).  A "sent" call
// also has "sid" and "form" (the parsed body: {name: value or [values]}).
//
// Control, besides fake-common.js's:
//   POST /__control/accounts {"accounts":{"AC...":"authToken"},
//        "keys":{"SK...":{"secret","account":"AC..."}}}  (added)
//   POST /__control/emit {"url","authToken","params":[[name,value],...]|
//        {name:value},"signature":"..."|null,"signUrl":"url signed, when
//        not url","headers":{},"timeout":ms}
//        POSTs the params form-encoded, signed as Twilio signs:
//        X-Twilio-Signature = base64(HMAC-SHA1(authToken, signUrl + the
//        params sorted by name (then value), each name + value)).
//        "signature" given: that header instead, null: none.  Answers
//        {"status","headers","body","sent":{"body","signature"}}.
//   POST /__control/media {"account","base64"|"text","mimeType"}
//        -> {"sid":"ME...","url":"http://HOST/2010-04-01/Accounts/AC/
//        Messages/MM.../Media/ME..."}
//   POST /__control/auto-status {"statuses":["queued","sent",
//        "delivered"],"delay":ms,"errorCode":30003,"via":"http://HOST:
//        PORT"}  (or {"statuses":null}: off): after each send with a
//        StatusCallback, one signed callback per status to it, "delay" ms
//        apart (default 10); "undelivered" and "failed" carry ErrorCode.
//        "via" stands for a TLS terminator: the callback is posted to the
//        same path on "via", signed over the StatusCallback itself.
//   Forced answers may name a Twilio error: {"error":21211} is that
//   error's answer (known: 20003 20404 20429 21211 21408 21610 21614
//   30001; "status", "message" override).
'use strict';

const crypto = require('crypto');
const { Fake, json, isObject } = require('./fake-common');

const ERRORS = {
    20003: [401, 'Authenticate'],
    20404: [404, 'The requested resource was not found'],
    20429: [429, 'Too Many Requests'],
    21211: [400, "The 'To' number is not a valid phone number."],
    21408: [400, 'Permission to send an SMS has not been enabled for the'
                 + ' region indicated by the \'To\' number'],
    21602: [400, 'Message body is required.'],
    21603: [400, "A 'From' phone number is required."],
    21609: [400, 'Invalid StatusCallback URL'],
    21610: [400, 'Attempt to send to unsubscribed recipient'],
    21212: [400, "The 'From' number is not a valid phone number, shortcode,"
                 + ' or alphanumeric sender ID.'],
    21614: [400, "'To' number is not a valid mobile number"],
    21617: [400, 'The concatenated message body exceeds the 1600 character'
                 + ' limit.'],
    21620: [400, 'Invalid media URL(s)'],
    30001: [500, 'Queue overflow'],
};

function twilioError(code, o = {}) {
    const [status, message] = ERRORS[code] || [400, 'Error'];
    const s = o.status || status;
    return {
        status: s,
        body: { code, message: o.message || message,
                more_info: `https://www.twilio.com/docs/errors/${code}`,
                status: s },
    };
}

const invalid = (code, message) => ({ ...twilioError(code, { message }),
                                      outcome: 'invalid' });

// Twilio's signature of a form POST to url
function signature(token, url, pairs) {
    const cmp = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));
    const sorted = pairs.slice().sort((a, b) =>
        cmp(a[0], b[0]) || cmp(a[1], b[1]));
    const data = url + sorted.map(([k, v]) => k + v).join('');
    return crypto.createHmac('sha1', token).update(Buffer.from(data))
        .digest('base64');
}

const sid = (prefix) => prefix + crypto.randomBytes(16).toString('hex');
const e164 = (s) => typeof s === 'string' && /^\+[1-9][0-9]{1,14}$/.test(s);
const httpUrl = (s) => typeof s === 'string' && /^https?:\/\/\S+$/.test(s);

// the form as {name: value or [values]}, and as its pairs
function parseForm(raw) {
    const pairs = [...new URLSearchParams(raw.toString())];
    const form = {};
    for (const [k, v] of pairs) {
        if (form[k] === undefined) form[k] = v;
        else form[k] = [].concat(form[k], v);
    }
    return { form, pairs };
}

// --- state (cleared by reset)
let accounts, keys, media, auto, s3;

// the account the Basic credentials open, if it is `account`
function authorized(req, account) {
    const m = /^Basic\s+(\S+)$/i.exec(req.headers.authorization || '');
    if (!m) return false;
    const plain = Buffer.from(m[1], 'base64').toString();
    const i = plain.indexOf(':');
    if (i < 0) return false;
    const user = plain.slice(0, i);
    const pass = plain.slice(i + 1);
    if (user === account) return accounts[account] === pass;
    const k = keys[user];
    return !!k && k.secret === pass && k.account === account;
}

const unauthorized = () => ({ ...twilioError(20003), outcome: 'unauthorized' });

function sendMessage(call, req, account, raw) {
    if (!accounts[account] || !authorized(req, account)) {
        return unauthorized();
    }
    if (!/^application\/x-www-form-urlencoded\b/i.test(
        req.headers['content-type'] || '')) {
        return invalid(21602, 'Content-Type must be'
                       + ' application/x-www-form-urlencoded');
    }
    const { form } = parseForm(raw);
    call.form = form;
    const one = (v) => (Array.isArray(v) ? v[0] : v);
    const to = one(form.To);
    const from = one(form.From);
    const service = one(form.MessagingServiceSid);
    const body = one(form.Body);
    const mediaUrls = form.MediaUrl === undefined ? []
        : [].concat(form.MediaUrl);
    if (!e164(to)) {
        return invalid(21211, `The 'To' number ${to} is not a valid phone`
                       + ' number.');
    }
    if (from === undefined && service === undefined) return invalid(21603);
    if (from !== undefined && !e164(from)) return invalid(21212);
    if (service !== undefined && !/^MG[0-9a-f]{32}$/i.test(service)) {
        return invalid(21212, 'Invalid MessagingServiceSid');
    }
    if ((body === undefined || body === '') && mediaUrls.length === 0) {
        return invalid(21602);
    }
    if (body !== undefined && [...body].length > 1600) return invalid(21617);
    if (!mediaUrls.every(httpUrl)) return invalid(21620);
    const callback = one(form.StatusCallback);
    if (callback !== undefined && !httpUrl(callback)) return invalid(21609);
    const id = sid('SM');
    call.sid = id;
    const created = new Date().toUTCString();
    return {
        status: 201, outcome: 'sent',
        body: {
            sid: id, account_sid: account, to, from: from ?? null,
            messaging_service_sid: service ?? null, body: body ?? '',
            status: 'queued', num_media: String(mediaUrls.length),
            num_segments: String(Math.max(1, Math.ceil(
                [...(body || '')].length / 153))),
            direction: 'outbound-api', api_version: '2010-04-01',
            date_created: created, date_updated: created, date_sent: null,
            error_code: null, error_message: null, price: null,
            uri: `/2010-04-01/Accounts/${account}/Messages/${id}.json`,
        },
        after: () => autoStatuses(account, id, to, from, callback),
    };
}

function mediaDownload(req, account, mediaSid) {
    if (!accounts[account] || !authorized(req, account)) {
        return unauthorized();
    }
    const m = media[mediaSid];
    if (!m || m.account !== account) {
        return { ...twilioError(20404), outcome: 'invalid' };
    }
    const key = crypto.randomBytes(16).toString('hex');
    const sig = crypto.randomBytes(32).toString('hex');
    s3[key] = { sid: mediaSid, sig, expires: Date.now() + 60000 };
    const location = `http://${req.headers.host}/s3/${key}`
        + '?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=60'
        + `&X-Amz-Signature=${sig}`;
    return { status: 307, body: '', outcome: 'redirect',
             headers: { Location: location, 'Content-Type': 'text/plain' } };
}

// S3's XML error
function s3Error(status, code, message, outcome) {
    return { status, outcome,
             headers: { 'Content-Type': 'application/xml' },
             body: '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
                   + `${code}</Code><Message>${message}</Message></Error>` };
}

function s3Download(call, req, key) {
    if (req.headers.authorization !== undefined) {
        return s3Error(400, 'InvalidArgument', 'Only one auth mechanism'
                       + ' allowed; only the X-Amz-Algorithm query'
                       + ' parameter, Signature query string parameter or'
                       + ' the Authorization header should be specified',
                       's3-auth');
    }
    const o = s3[key];
    if (!o || call.query['X-Amz-Signature'] !== o.sig
        || Date.now() > o.expires || !media[o.sid]) {
        return s3Error(403, 'AccessDenied', 'Request has expired or the'
                       + ' signature does not match', 's3-denied');
    }
    const m = media[o.sid];
    return { status: 200, body: m.bytes, outcome: 'media',
             headers: { 'Content-Type': m.mimeType } };
}

function handle(call, req, raw) {
    const p = call.path.split('/').slice(1).map(decodeURIComponent);
    if (p[0] === '2010-04-01' && p[1] === 'Accounts') {
        if (req.method === 'POST' && p.length === 4
            && p[3] === 'Messages.json') {
            return sendMessage(call, req, p[2], raw);
        }
        if (req.method === 'GET' && p.length === 7 && p[3] === 'Messages'
            && p[5] === 'Media') {
            return mediaDownload(req, p[2], p[6]);
        }
    }
    if (req.method === 'GET' && p[0] === 's3' && p.length === 2) {
        return s3Download(call, req, p[1]);
    }
    return { ...twilioError(20404), outcome: 'unknown' };
}

// POSTs params to url as Twilio does, signed with token
function postForm(kind, o) {
    const pairs = Array.isArray(o.params) ? o.params.map(([k, v]) =>
        [String(k), String(v)])
        : Object.entries(o.params || {}).map(([k, v]) => [k, String(v)]);
    const body = new URLSearchParams(pairs).toString();
    let sig = o.signature;
    if (sig === undefined) {
        if (typeof o.authToken !== 'string') {
            return Promise.resolve({ status: null,
                                     error: 'no "authToken" to sign with' });
        }
        sig = signature(o.authToken, o.signUrl || o.url, pairs);
    }
    const headers = {
        'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8',
        'I-Twilio-Idempotency-Token': crypto.randomUUID(),
        ...(sig === null || sig === false ? {}
            : { 'X-Twilio-Signature': sig }),
        ...(o.headers || {}),
    };
    return fake.post(kind, { url: o.url, payload: body, signature: null,
                             headers, timeout: o.timeout })
        .then((r) => ({ ...r, sent: { body, signature: sig ?? null } }));
}

function autoStatuses(account, id, to, from, callback) {
    if (!auto || !auto.statuses || !callback) return;
    const a = auto;
    const delay = a.delay === undefined ? 10 : Number(a.delay);
    a.statuses.forEach((status, i) => setTimeout(() => {
        if (a !== auto) return;    // reset or reconfigured meanwhile
        const params = [['MessageSid', id], ['SmsSid', id],
                        ['MessageStatus', status], ['SmsStatus', status],
                        ['AccountSid', account], ['To', to],
                        ['ApiVersion', '2010-04-01']];
        if (from) params.push(['From', from]);
        if (status === 'undelivered' || status === 'failed') {
            params.push(['ErrorCode', String(a.errorCode || 30003)]);
        }
        // "via": a TLS terminator in front of the callback's host: the
        // request goes there, the signature is over the callback's URL
        const url = a.via ? callback.replace(/^https?:\/\/[^/]+/, a.via)
                          : callback;
        postForm('auto-status', { url, signUrl: callback, params,
                                  authToken: accounts[account] });
    }, delay * (i + 1)));
}

const fake = new Fake({
    name: 'twilio',
    userAgent: 'TwilioProxy/1.1',
    handle,
    reset() {
        accounts = {};
        keys = {};
        media = {};
        auto = null;
        s3 = {};
    },
    forced(item) {
        if (item.error === undefined) return null;
        const a = twilioError(Number(item.error), item);
        return { ...a, headers: item.headers };
    },
    control: {
        'POST accounts': (b) => {
            Object.assign(accounts, isObject(b.accounts) ? b.accounts : {});
            Object.assign(keys, isObject(b.keys) ? b.keys : {});
            return json(200, { accounts, keys });
        },
        'POST emit': async (b) => {
            if (typeof b.url !== 'string') {
                return json(400, { error: '"url" is required' });
            }
            return json(200, await postForm('emit', b));
        },
        'POST media': (b, q, req) => {
            if (typeof b.account !== 'string') {
                return json(400, { error: '"account" is required' });
            }
            const bytes = typeof b.base64 === 'string'
                ? Buffer.from(b.base64, 'base64') : Buffer.from(b.text || '');
            const me = sid('ME');
            const mm = b.message || sid('MM');
            media[me] = { account: b.account, bytes,
                          mimeType: b.mimeType || 'image/jpeg' };
            return json(200, { sid: me, url: `http://${req.headers.host}`
                + `/2010-04-01/Accounts/${b.account}/Messages/${mm}`
                + `/Media/${me}` });
        },
        'POST auto-status': (b) => {
            auto = Array.isArray(b.statuses) ? { ...b } : null;
            return json(200, { autoStatus: auto });
        },
    },
});

fake.listen();
