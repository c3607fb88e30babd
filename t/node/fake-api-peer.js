// A fake peer of OrbitDesk's API channel (the "custom channel"): an outside
// system that gets our outbound messages as signed webhooks and sends us
// its users' messages and the statuses of ours.  Started from Perl by
// Orbit::Fake->start('api-peer') (t/lib/Orbit/Fake.pm); the recording,
// forced answers, delay and emit are fake-common.js's, documented there.
//
// THE WIRE FORMAT of the API channel (ours; this is its definition).
// Both ways: Content-Type: application/json, and the header
//   X-Hub-Signature-256: sha256=<hex HMAC-SHA256(key = the channel's secret,
//                                                message = raw body bytes)>
// which the receiver checks, in constant time, before it parses the body.
//
// 1. Outbound, OrbitDesk -> the peer's webhook URL: one message a POST.
//   header X-Orbit-Delivery: <our message uuid>, the same as "id": the
//   idempotency key; a retry of a message carries the same one.
//   {"event":"message",                       always "message"
//    "id":"<our message uuid>",
//    "conversationId":"<uuid>",
//    "to":{"id":"<peer's user id>","phone":"+E164"?},
//    "type":"text|image|video|audio|document|location|template",
//    "content":CONTENT,                        by type, below
//    "replyTo":"<peer message id>"?,           a reply to that message
//    "timestamp":<unix s, integer>}
//   CONTENT:
//     text       {"text":"<1 character or more>"}
//     image, video, audio, document
//                {"url":"http(s)://...","mimeType":"..."?,"caption":"..."?,
//                 "filename":"..."?}
//     location   {"latitude":-90..90,"longitude":-180..180,"name"?,
//                 "address"?}
//     template   {"name":"...","language":"en_US","parameters":["..."]?}
//   No other keys, at either level.
//   The peer answers 200 {"id":"<peer message id>"} (keep it: its statuses
//   name our message by it).  A repeated X-Orbit-Delivery gets the first
//   answer again.  Signature missing or wrong: 403 {"error":"invalid
//   signature"}; no X-Orbit-Delivery, or not equal to "id", or a body not
//   of this format: 400 {"error":"..."}.  Anything else (5xx, a timeout, a
//   dropped connection) is a failure to retry with the same delivery id.
//
// 2. Inbound, the peer -> our webhook URL:
//   {"messages":[MESSAGE...]?,"statuses":[STATUS...]?}
//   MESSAGE: {"id":"<peer msg id>","from":{"id":"<user id>","phone":
//     "+E164"?,"name"?},"timestamp":<unix s>,"type":TYPE,...,
//     "replyTo":"<peer msg id>"?} where by TYPE
//     text       "text":"hello"
//     image, video, audio, document
//                "media":{"url","mimeType","caption"?,"filename"?}
//     location   "location":{"latitude","longitude","name"?,"address"?}
//   STATUS: {"id":"<peer message id of one of our outbound messages>",
//     "status":"delivered|read|failed","timestamp":<unix s>,
//     "error":{"code","title"}?  (with failed)}
//   We answer 200 once it is stored; a wrong signature gets 403.
//
// The fake: POST to any path (not /__control/) is a delivery.  Outcomes of
// calls: accepted (also "peerId", "delivery"), duplicate (also
// "duplicateOf": the index of the accepted call), rejected (signature),
// invalid (and forced, hang, close).  With no secret configured every
// delivery is rejected.
//
// Control, besides fake-common.js's (inbound goes by POST /__control/emit,
// signed with "secret"):
//   POST /__control/secret {"secret":"..."} -> {"secret":"..."}
'use strict';

const crypto = require('crypto');
const { Fake, json, isObject, signatureOk } = require('./fake-common');

const str = (v) => typeof v === 'string' && v.length > 0;
const optStr = (v) => v === undefined || typeof v === 'string';
const num = (v, max) => typeof v === 'number' && Math.abs(v) <= max;
const E164 = /^\+[1-9]\d{6,14}$/;
const only = (o, keys) => Object.keys(o).every((k) => keys.includes(k));

const MEDIA_CONTENT = (c) =>
    only(c, ['url', 'mimeType', 'caption', 'filename'])
    && typeof c.url === 'string' && /^https?:\/\/\S+$/.test(c.url)
    && optStr(c.mimeType) && optStr(c.caption) && optStr(c.filename);

const CONTENT = {
    text: (c) => only(c, ['text']) && str(c.text),
    image: MEDIA_CONTENT,
    video: MEDIA_CONTENT,
    audio: MEDIA_CONTENT,
    document: MEDIA_CONTENT,
    location: (c) => only(c, ['latitude', 'longitude', 'name', 'address'])
        && num(c.latitude, 90) && num(c.longitude, 180)
        && optStr(c.name) && optStr(c.address),
    template: (c) => only(c, ['name', 'language', 'parameters'])
        && str(c.name) && str(c.language)
        && (c.parameters === undefined || Array.isArray(c.parameters)
            && c.parameters.every((p) => typeof p === 'string')),
};

// what is wrong with an outbound message, or null
function checkMessage(b) {
    if (!isObject(b)) return 'the body must be a JSON object';
    if (!only(b, ['event', 'id', 'conversationId', 'to', 'type', 'content',
                  'replyTo', 'timestamp'])) {
        return 'unknown keys';
    }
    if (b.event !== 'message') return '"event" must be "message"';
    if (!str(b.id) || !str(b.conversationId)) {
        return '"id" and "conversationId" are required';
    }
    if (!isObject(b.to) || !only(b.to, ['id', 'phone']) || !str(b.to.id)
        || !(b.to.phone === undefined || E164.test(b.to.phone))) {
        return '"to" must be {"id","phone"?} (phone: +E164)';
    }
    if (!CONTENT[b.type]) return `"type" ${JSON.stringify(b.type)} unknown`;
    if (!isObject(b.content) || !CONTENT[b.type](b.content)) {
        return `"content" is not that of a ${b.type} message`;
    }
    if (!optStr(b.replyTo) || b.replyTo === '') {
        return '"replyTo" must be a peer message id';
    }
    if (!Number.isInteger(b.timestamp) || b.timestamp <= 0) {
        return '"timestamp" must be unix seconds';
    }
    return null;
}

let secret, delivered;
let peerSeq = 0;    // not reset: ids stay unique over a whole test

function handle(call, req, raw) {
    if (!signatureOk(secret, raw, req.headers['x-hub-signature-256'])) {
        return { status: 403, body: { error: 'invalid signature' },
                 outcome: 'rejected' };
    }
    const delivery = req.headers['x-orbit-delivery'];
    const bad = (error) => ({ status: 400, body: { error },
                              outcome: 'invalid' });
    if (!str(delivery)) return bad('X-Orbit-Delivery is required');
    call.delivery = delivery;
    const first = delivered.get(delivery);
    if (first) {
        call.duplicateOf = first.index;
        call.peerId = first.peerId;
        return { ...first.answer, outcome: 'duplicate' };
    }
    if (call.json === null) return bad('the body is not JSON');
    const wrong = checkMessage(call.json);
    if (wrong) return bad(wrong);
    if (call.json.id !== delivery) {
        return bad('X-Orbit-Delivery is not the message\'s "id"');
    }
    call.peerId = `peer-${++peerSeq}-${crypto.randomBytes(4).toString('hex')}`;
    const answer = { status: 200, body: { id: call.peerId } };
    delivered.set(delivery, { index: call.index, peerId: call.peerId,
                              answer });
    return { ...answer, outcome: 'accepted' };
}

new Fake({
    name: 'api-peer',
    userAgent: 'orbit-fake-api-peer',
    handle,
    reset() {
        secret = null;
        delivered = new Map();
    },
    control: {
        'POST secret': (b) => {
            if (!str(b.secret)) {
                return json(400, { error: '"secret" must be a string' });
            }
            secret = b.secret;
            return json(200, { secret });
        },
    },
}).listen();
