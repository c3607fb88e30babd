// A fake Graph API of Messenger (pages) and Instagram DMs for the suites:
// the Send API of ../shared/PROTOCOLS.md section 2.  Started from Perl by
// Orbit::Fake->start('meta') (t/lib/Orbit/Fake.pm; payload builders in
// t/lib/Orbit/FakeMeta.pm); the recording, forced answers, delay and emit
// are fake-common.js's, documented there.
//
// Graph, as the fake answers it (VERSION is v<N> or v<N>.<M>):
//   POST /VERSION/ID/messages, Authorization: Bearer TOKEN, where ID is a
//   page id or an Instagram professional account id
//     TOKEN not one configured for ID (or none; access_token in the query
//     is not taken): 401, Graph's {"error":{"message":"Invalid OAuth access
//     token - Cannot parse access token","type":"OAuthException","code":
//     190,"fbtrace_id":"A..."}}
//     Content-Type not application/json, or a body that is not what the
//     Send API takes: 400 {"error":{"message":"(#100) ...","type":
//     "OAuthException","code":100,"error_data":{"details":"..."},
//     "fbtrace_id"}}.  Checked: a JSON object; recipient.id a string;
//     exactly one of message and sender_action; sender_action typing_on,
//     typing_off or mark_seen (no messaging_type needed); with a message,
//     messaging_type RESPONSE, UPDATE or MESSAGE_TAG, and tag (HUMAN_AGENT,
//     ACCOUNT_UPDATE, CONFIRMED_EVENT_UPDATE, POST_PURCHASE_UPDATE) exactly
//     when MESSAGE_TAG; message has exactly one of text (1-2000
//     characters) and attachment {type image|video|audio|file, payload
//     {url http(s), is_reusable boolean?} or {attachment_id}}; quick_replies
//     an array if given; no other keys at the top or in message.
//     Sent: 200 {"recipient_id":ID of the recipient,"message_id":"m_..."}
//     (Instagram's ids are base64 of "ig_message_item:1:IGMessageThread:
//     ..."); a sender action: 200 {"recipient_id"}.
//   anything else: 400 code 2500 "Unknown path components"
// Outcomes of calls: sent, action, unauthorized, invalid, unknown (and
// forced, hang, close).  A "sent" call also has "mid", "recipient" and
// "object" ("page" or "instagram"); an "action" call "action".
//
// Control, besides fake-common.js's:
//   POST /__control/tokens {"tokens":{"ID":["TOKEN",...]|"TOKEN"},
//        "object":"page"|"instagram"}  sets those ids' tokens (and which
//        product they are, default page) -> {"tokens":{...all}}
//   POST /__control/auto-status {"url","appSecret","statuses":["delivery",
//        "read"],"echo":true|false,"delay":ms}  (or {"url":null}: off)
//        after each message sent, signed webhooks to url, "delay" ms apart
//        (default 10), as Meta sends them: the echo first when "echo"
//        (message.is_echo, from the page), then each status: delivery
//        {mids:[mid],watermark} and read {watermark} (the time of the
//        webhook, in ms).
//   Forced answers may name a Graph error: {"error":551} is that error's
//   answer (known: 2 4 10 100 190 551 613 1200 2018001 2500 — 2018001 is
//   code 100 with that error_subcode; "status", "message", "details"
//   override).
'use strict';

const crypto = require('crypto');
const { Fake, json, isObject, graphError: graphErrorOf } =
    require('./fake-common');

const FB_ERRORS = {
    2: [500, 'An unexpected error has occurred. Please retry your request'
        + ' later.'],
    4: [400, 'Application request limit reached'],
    10: [400, 'This message is sent outside of allowed window.'],
    100: [400, 'Invalid parameter'],
    190: [401, 'Invalid OAuth access token - Cannot parse access token'],
    551: [400, 'This person isn\'t available right now.'],
    613: [400, 'Calls to this api have exceeded the rate limit.'],
    1200: [500, 'Temporary send message failure. Please try again later'],
    2500: [400, 'Unknown path components'],
};

// Messenger's "no matching user" is a 100 with its own subcode
function graphError(code, o = {}) {
    if (code === 2018001) {
        return graphErrorOf(FB_ERRORS, 100, {
            message: '(#100) No matching user found', subcode: 2018001, ...o });
    }
    return graphErrorOf(FB_ERRORS, code, o);
}

const invalid = (details) => ({
    ...graphError(100, { details, message: `(#100) ${details}` }),
    outcome: 'invalid' });

const str = (v) => typeof v === 'string' && v.length > 0;
const chars = (s) => [...s].length;
const TAGS = ['HUMAN_AGENT', 'ACCOUNT_UPDATE', 'CONFIRMED_EVENT_UPDATE',
              'POST_PURCHASE_UPDATE'];
const ACTIONS = ['typing_on', 'typing_off', 'mark_seen'];
const KINDS = ['image', 'video', 'audio', 'file'];

function only(o, keys, where) {
    const extra = Object.keys(o).filter((k) => !keys.includes(k));
    return extra.length ? `${where} has an unknown key ${extra[0]}` : null;
}

// the details of what is wrong with a Send API body, or null
function checkSend(b) {
    if (!isObject(b)) return 'the body must be a JSON object';
    const top = only(b, ['recipient', 'messaging_type', 'tag', 'message',
                         'sender_action', 'notification_type'], 'the body');
    if (top) return top;
    if (!isObject(b.recipient) || !str(b.recipient.id)) {
        return 'param recipient[id] must be a string';
    }
    if ((b.message === undefined) === (b.sender_action === undefined)) {
        return 'exactly one of message and sender_action is required';
    }
    if (b.sender_action !== undefined) {
        if (!ACTIONS.includes(b.sender_action)) {
            return `param sender_action '${b.sender_action}' is not valid`;
        }
        return null;
    }
    if (!['RESPONSE', 'UPDATE', 'MESSAGE_TAG'].includes(b.messaging_type)) {
        return 'param messaging_type must be RESPONSE, UPDATE or MESSAGE_TAG';
    }
    if ((b.messaging_type === 'MESSAGE_TAG') !== (b.tag !== undefined)) {
        return 'param tag goes with messaging_type MESSAGE_TAG';
    }
    if (b.tag !== undefined && !TAGS.includes(b.tag)) {
        return `param tag '${b.tag}' is not valid`;
    }
    const m = b.message;
    if (!isObject(m)) return 'param message must be a JSON object';
    const keys = only(m, ['text', 'attachment', 'quick_replies', 'metadata'],
                      'message');
    if (keys) return keys;
    if ((m.text === undefined) === (m.attachment === undefined)) {
        return 'message must have exactly one of text and attachment';
    }
    if (m.quick_replies !== undefined && !Array.isArray(m.quick_replies)) {
        return 'param message[quick_replies] must be an array';
    }
    if (m.text !== undefined) {
        if (!str(m.text)) return 'param message[text] must be a string';
        if (chars(m.text) > 2000) {
            return 'param message[text] must be at most 2000 characters';
        }
        return null;
    }
    const a = m.attachment;
    if (!isObject(a) || !KINDS.includes(a.type)) {
        return 'param message[attachment][type] is not valid';
    }
    const p = a.payload;
    if (!isObject(p) || str(p.url) === str(p.attachment_id)) {
        return 'param message[attachment][payload] needs url or'
            + ' attachment_id';
    }
    if (p.url !== undefined && !/^https?:\/\/\S+$/.test(p.url)) {
        return 'param message[attachment][payload][url] is not a valid URL';
    }
    if (p.is_reusable !== undefined && typeof p.is_reusable !== 'boolean') {
        return 'param message[attachment][payload][is_reusable] must be a'
            + ' boolean';
    }
    return null;
}

// --- state (cleared by reset)
let tokens, objects, auto, seq = 0;

function bearer(req) {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization || '');
    return m ? m[1] : null;
}

function mid(object) {
    const n = ++seq;
    if (object === 'instagram') {
        return Buffer.from('ig_message_item:1:IGMessageThread:'
            + crypto.randomBytes(8).readBigUInt64BE().toString() + `:${n}`)
            .toString('base64');
    }
    return 'm_' + crypto.randomBytes(30).toString('base64url') + n;
}

function sendMessage(call, req, id) {
    const token = bearer(req);
    if (!token || !(tokens[id] || []).includes(token)) {
        return { ...graphError(190), outcome: 'unauthorized' };
    }
    if (!/^application\/json\b/i.test(req.headers['content-type'] || '')) {
        return invalid('Content-Type must be application/json');
    }
    const b = call.json;
    if (b === null) return invalid('the body must be JSON');
    const details = checkSend(b);
    if (details) return invalid(details);
    const to = b.recipient.id;
    if (b.sender_action !== undefined) {
        call.action = b.sender_action;
        return { status: 200, body: { recipient_id: to },
                 outcome: 'action' };
    }
    const object = objects[id] || 'page';
    call.mid = mid(object);
    call.recipient = to;
    call.object = object;
    return {
        status: 200, outcome: 'sent',
        body: { recipient_id: to, message_id: call.mid },
        after: () => autoStatuses(object, id, to, call.mid, b.message),
    };
}

function handle(call, req) {
    const p = call.path.split('/').slice(1).map(decodeURIComponent);
    const versioned = /^v\d+(\.\d+)?$/.test(p[0]);
    if (req.method === 'POST' && versioned && p.length === 3
        && p[2] === 'messages') {
        return sendMessage(call, req, p[1]);
    }
    return { ...graphError(2500, { message:
        `Unknown path components: ${call.path}` }), outcome: 'unknown' };
}

// --- webhooks, as Meta sends them after a send
function webhook(object, id, event) {
    const t = Date.now();
    return { object, entry: [{ id, time: t,
                               messaging: [{ timestamp: t, ...event }] }] };
}

function autoStatuses(object, id, to, messageId, message) {
    if (!auto || !auto.url) return;
    const a = auto;
    const events = [];
    if (a.echo) {
        events.push(() => ({ sender: { id }, recipient: { id: to },
                             message: { mid: messageId, is_echo: true,
                                        ...message } }));
    }
    for (const s of a.statuses || ['delivery', 'read']) {
        events.push(() => (s === 'delivery'
            ? { sender: { id: to }, recipient: { id },
                delivery: { mids: [messageId], watermark: Date.now() } }
            : { sender: { id: to }, recipient: { id },
                read: { watermark: Date.now() } }));
    }
    const delay = a.delay === undefined ? 10 : Number(a.delay);
    events.forEach((make, i) => setTimeout(() => {
        if (a !== auto) return;    // reset or reconfigured meanwhile
        fake.post('auto-status', { url: a.url, secret: a.appSecret,
                                   payload: webhook(object, id, make()) });
    }, delay * (i + 1)));
}

const fake = new Fake({
    name: 'meta',
    userAgent: 'facebookexternalua',
    handle,
    reset() {
        tokens = {};
        objects = {};
        auto = null;
    },
    forced(item) {
        if (item.error === undefined) return null;
        const a = graphError(Number(item.error), item);
        return { ...a, headers: { ...a.headers, ...item.headers } };
    },
    control: {
        'POST tokens': (b) => {
            if (!isObject(b.tokens)) {
                return json(400, { error: '"tokens" must be an object' });
            }
            if (b.object !== undefined
                && !['page', 'instagram'].includes(b.object)) {
                return json(400, { error: '"object": page or instagram' });
            }
            for (const [id, t] of Object.entries(b.tokens)) {
                tokens[id] = [].concat(t);
                objects[id] = b.object || 'page';
            }
            return json(200, { tokens });
        },
        'POST auto-status': (b) => {
            if (b.url && typeof b.appSecret !== 'string') {
                return json(400, { error: '"appSecret" is required' });
            }
            auto = b.url ? { ...b } : null;
            return json(200, { autoStatus: auto });
        },
    },
});

fake.listen();
