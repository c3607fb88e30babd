// A fake WhatsApp Cloud API (Graph API) for the suites: the shapes of
// ../shared/PROTOCOLS.md section 1.  Started from Perl by
// Orbit::Fake->start('whatsapp') (t/lib/Orbit/Fake.pm); the recording,
// forced answers, delay and emit are fake-common.js's, documented there.
//
// Graph, as the fake answers it (VERSION is v<N> or v<N>.<M>):
//   POST /VERSION/PHONE_NUMBER_ID/messages, Authorization: Bearer TOKEN
//     TOKEN not one configured for PHONE_NUMBER_ID (or none): 401, Graph's
//     {"error":{"message":"Invalid OAuth access token - Cannot parse access
//     token","type":"OAuthException","code":190,"fbtrace_id":"A..."}}
//     A send that is not what the API takes: 400 {"error":{"message":"(#100)
//     Invalid parameter","type":"OAuthException","code":100,"error_data":
//     {"messaging_product":"whatsapp","details":"..."},"fbtrace_id"}}.
//     Checked: Content-Type application/json; a JSON object;
//     messaging_product "whatsapp"; recipient_type
//     "individual" if given; "to" a phone number; type (default text) one of
//     text image video audio document sticker location contacts template
//     interactive reaction, with its object: text.body 1-4096 characters;
//     media by "id" or "link" (not both), caption (image, video, document)
//     up to 1024, filename (document); location latitude/longitude; template
//     name and language.code, components with a type (button: sub_type and
//     index); interactive type and action (button: 1-3 reply buttons, list:
//     action.button and sections), body.text for button and list; reaction
//     message_id and emoji; context.message_id if context is given.
//     Sent: 200 {"messaging_product":"whatsapp","contacts":[{"input":TO,
//     "wa_id":TO's digits}],"messages":[{"id":"wamid.<base64>"}]} (a
//     template's message also has "message_status":"accepted").
//     Mark as read {"messaging_product":"whatsapp","status":"read",
//     "message_id":"wamid..."}: 200 {"success":true}.
//   GET /VERSION/MEDIA_ID (Bearer: any configured token) ->
//     {"messaging_product":"whatsapp","url":"http://HOST/media-download/
//     MEDIA_ID?ext=...&hash=...","mime_type","sha256","file_size","id"};
//     unknown: 400 code 100 (GraphMethodException, error_subcode 33)
//   GET that url (same Bearer): the bytes, with their Content-Type
//   DELETE /VERSION/MEDIA_ID: {"success":true}
//   anything else: 400 code 2500 "Unknown path components"
// Outcomes of calls: sent, read, unauthorized, invalid, media, download,
// deleted, unknown (and forced, hang, close).  A "sent" call also has
// "wamid" and "waId".
//
// Control, besides fake-common.js's:
//   POST /__control/tokens {"tokens":{"PHONE_NUMBER_ID":["TOKEN",...]|
//        "TOKEN"}}   sets those ids' tokens -> {"tokens":{...all}}
//   POST /__control/media {"id"?,"mimeType","base64"|"text","filename"?}
//        -> {"id","mime_type","sha256","file_size"}
//   POST /__control/auto-status {"url","appSecret","statuses":["sent",
//        "delivered","read"],"delay":ms,"error":{"code","title"},
//        "wabaId","displayPhoneNumber"}  (or {"url":null}: off)
//        after each successful send, one signed webhook per status, the
//        first "delay" ms after the answer and each next "delay" ms later,
//        as Meta sends them; "failed" carries "error" (default 131026).
//   Forced answers may name a Graph error: {"error":131047} is a 400 with
//   that error's body (known: 100 190 2500 130429 131000 131009 131026
//   131047 131056 132001; "status", "message", "details" override).
'use strict';

const crypto = require('crypto');
const { Fake, json, isObject, now, graphError: graphErrorOf } =
    require('./fake-common');

const FB_ERRORS = {
    100: [400, 'Invalid parameter'],
    190: [401, 'Invalid OAuth access token - Cannot parse access token'],
    2500: [400, 'Unknown path components'],
    130429: [400, 'Rate limit hit',
             'Cloud API message throughput has been reached.'],
    131000: [500, 'Something went wrong',
             'Message failed to send because of an unknown error.'],
    131009: [400, 'Parameter value is not valid',
             'One or more parameter values are invalid.'],
    131026: [400, 'Message undeliverable',
             'Unable to deliver message. Reasons can include: the recipient'
             + ' phone number is not a WhatsApp phone number.'],
    131047: [400, 'Re-engagement message',
             'Message failed to send because more than 24 hours have passed'
             + ' since the customer last replied to this number.'],
    131056: [400, '(Business Account, Consumer Account) pair rate limit hit',
             'Too many messages sent from the sender phone number to the same'
             + ' recipient phone number in a short period of time.'],
    132001: [400, 'Template name does not exist in the translation',
             'template name does not exist in the translation'],
};

let seq = 0;

const graphError = (code, o = {}) => graphErrorOf(FB_ERRORS, code, o,
    (details) => ({ messaging_product: 'whatsapp', details }));

const invalid = (details) => ({ ...graphError(100, { details }),
                                outcome: 'invalid' });

// a wamid as Meta makes them: base64 of the recipient and a hex id
function wamid(waId) {
    const hex = (seq++).toString(16).toUpperCase().padStart(6, '0')
        + crypto.randomBytes(6).toString('hex').toUpperCase();
    const digits = Buffer.from(waId);
    return 'wamid.' + Buffer.concat([
        Buffer.from([0x1c, 0x18, digits.length]), digits,
        Buffer.from([0x15, 0x02, 0x00, 0x11, 0x18, hex.length]),
        Buffer.from(hex), Buffer.from([0]),
    ]).toString('base64');
}

const str = (v) => typeof v === 'string' && v.length > 0;
const chars = (s) => [...s].length;
const MEDIA = ['image', 'video', 'audio', 'document', 'sticker'];
const TYPES = ['text', ...MEDIA, 'location', 'contacts', 'template',
               'interactive', 'reaction'];

// the details of what is wrong with a send, or null
function checkSend(b) {
    if (!isObject(b)) return 'the body must be a JSON object';
    if (b.messaging_product !== 'whatsapp') {
        return "Param messaging_product must be 'whatsapp'";
    }
    if (b.recipient_type !== undefined && b.recipient_type !== 'individual') {
        return "Param recipient_type must be 'individual'";
    }
    if (typeof b.to !== 'string' || !/^\+?[0-9][0-9 ()-]{4,}$/.test(b.to)) {
        return 'Param to must be a phone number';
    }
    const type = b.type === undefined ? 'text' : b.type;
    if (!TYPES.includes(type)) return `Param type '${type}' is not valid`;
    if (b.context !== undefined
        && !(isObject(b.context) && str(b.context.message_id))) {
        return 'Param context[message_id] is required';
    }
    const o = b[type];
    if (type !== 'contacts' && !isObject(o)) {
        return `Param ${type} must be a JSON object`;
    }
    if (MEDIA.includes(type)) return checkMedia(type, o);
    return CHECK[type](o);
}

function checkMedia(type, o) {
    if (str(o.id) === str(o.link)) {
        return `Param ${type} must have either 'id' or 'link'`;
    }
    if (o.link !== undefined && !/^https?:\/\/\S+$/.test(o.link)) {
        return `Param ${type}['link'] is not a valid URI`;
    }
    if (o.caption !== undefined) {
        if (!['image', 'video', 'document'].includes(type)) {
            return `Param ${type}['caption'] is not allowed`;
        }
        if (typeof o.caption !== 'string' || chars(o.caption) > 1024) {
            return `Param ${type}['caption'] must be at most 1024 characters`;
        }
    }
    if (o.filename !== undefined && (type !== 'document' || !str(o.filename))) {
        return `Param ${type}['filename'] is not valid`;
    }
    return null;
}

const coordinate = (v, max) => typeof v === 'number' && Math.abs(v) <= max
    || typeof v === 'string' && v.trim() !== '' && Math.abs(v) <= max;

const CHECK = {
    text(o) {
        if (typeof o.body !== 'string' || o.body.length === 0) {
            return "Param text['body'] is required";
        }
        if (chars(o.body) > 4096) {
            return "Param text['body'] must be at most 4096 characters";
        }
        if (o.preview_url !== undefined && typeof o.preview_url !== 'boolean') {
            return "Param text['preview_url'] must be a boolean";
        }
        return null;
    },
    location(o) {
        if (!coordinate(o.latitude, 90) || !coordinate(o.longitude, 180)) {
            return "Param location['latitude'] and ['longitude'] are required";
        }
        return null;
    },
    contacts(o) {
        if (!Array.isArray(o) || o.length === 0 || !o.every((c) =>
            isObject(c) && isObject(c.name) && str(c.name.formatted_name))) {
            return "Param contacts[0]['name']['formatted_name'] is required";
        }
        return null;
    },
    template(o) {
        if (!str(o.name)) return "Param template['name'] is required";
        if (!isObject(o.language) || !str(o.language.code)) {
            return "Param template['language']['code'] is required";
        }
        if (o.components === undefined) return null;
        if (!Array.isArray(o.components)) {
            return "Param template['components'] must be an array";
        }
        for (const c of o.components) {
            if (!isObject(c)
                || !['header', 'body', 'button'].includes(c.type)) {
                return "Param template['components'][i]['type'] is not valid";
            }
            if (c.type === 'button'
                && (!str(c.sub_type) || c.index === undefined)) {
                return 'Param template button needs sub_type and index';
            }
            if (c.parameters !== undefined && !(Array.isArray(c.parameters)
                && c.parameters.every((p) => isObject(p) && str(p.type)))) {
                return "Param template['components'][i]['parameters'] is not"
                    + ' valid';
            }
        }
        return null;
    },
    interactive(o) {
        if (!str(o.type) || !isObject(o.action)) {
            return "Param interactive['type'] and ['action'] are required";
        }
        if (['button', 'list'].includes(o.type)
            && !(isObject(o.body) && str(o.body.text))) {
            return "Param interactive['body']['text'] is required";
        }
        const a = o.action;
        if (o.type === 'button' && !(Array.isArray(a.buttons)
            && a.buttons.length >= 1 && a.buttons.length <= 3
            && a.buttons.every((x) => isObject(x) && x.type === 'reply'
                && isObject(x.reply) && str(x.reply.id)
                && str(x.reply.title) && chars(x.reply.title) <= 20))) {
            return "Param interactive['action']['buttons'] is not valid";
        }
        if (o.type === 'list' && !(str(a.button) && Array.isArray(a.sections)
            && a.sections.length >= 1 && a.sections.length <= 10)) {
            return "Param interactive['action'] needs button and sections";
        }
        return null;
    },
    reaction(o) {
        if (!str(o.message_id) || typeof o.emoji !== 'string') {
            return "Param reaction needs 'message_id' and 'emoji'";
        }
        return null;
    },
};

// --- state (cleared by reset)
let tokens, media, auto;
const anyToken = (t) => Object.values(tokens).some((l) => l.includes(t));

function bearer(req) {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization || '');
    return m ? m[1] : null;
}

const unauthorized = () => ({ ...graphError(190), outcome: 'unauthorized' });

function sendMessage(call, req, phoneId) {
    const token = bearer(req);
    if (!token || !(tokens[phoneId] || []).includes(token)) {
        return unauthorized();
    }
    const b = call.json;
    if (!/^application\/json\b/i.test(req.headers['content-type'] || '')) {
        return invalid('Content-Type must be application/json');
    }
    if (b === null) return invalid('the body must be JSON');
    if (isObject(b) && b.status !== undefined) {
        if (b.messaging_product !== 'whatsapp' || b.status !== 'read'
            || !str(b.message_id)) {
            return invalid("Param status must be 'read' with a message_id");
        }
        return { status: 200, body: { success: true }, outcome: 'read' };
    }
    const details = checkSend(b);
    if (details) return invalid(details);
    const waId = b.to.replace(/\D/g, '');
    const id = wamid(waId);
    const message = { id };
    if (b.type === 'template') message.message_status = 'accepted';
    call.wamid = id;
    call.waId = waId;
    return {
        status: 200, outcome: 'sent',
        body: { messaging_product: 'whatsapp',
                contacts: [{ input: b.to, wa_id: waId }],
                messages: [message] },
        after: () => autoStatuses(phoneId, id, waId, b.type || 'text',
                                  b.biz_opaque_callback_data),
    };
}

function mediaInfo(req, id) {
    if (!anyToken(bearer(req))) return unauthorized();
    const m = media[id];
    if (!m) {
        return { ...graphError(100, {
            type: 'GraphMethodException', subcode: 33,
            message: `Unsupported get request. Object with ID '${id}' does`
                + ' not exist, cannot be loaded due to missing permissions,'
                + ' or does not support this operation.' }),
                 outcome: 'invalid' };
    }
    const host = req.headers.host;
    return {
        status: 200, outcome: 'media',
        body: { messaging_product: 'whatsapp',
                url: `http://${host}/media-download/${encodeURIComponent(id)}`
                    + `?ext=${m.ext}&hash=${m.hash}`,
                mime_type: m.mime_type, sha256: m.sha256,
                file_size: m.file_size, id },
    };
}

function download(req, id, query) {
    if (!anyToken(bearer(req))) return unauthorized();
    const m = media[id];
    if (!m || query.hash !== m.hash) {
        return { status: 404, body: 'Not Found', outcome: 'invalid' };
    }
    return { status: 200, body: m.bytes, outcome: 'download',
             headers: { 'Content-Type': m.mime_type } };
}

function handle(call, req) {
    const p = call.path.split('/').slice(1).map(decodeURIComponent);
    const versioned = /^v\d+(\.\d+)?$/.test(p[0]);
    if (req.method === 'POST' && versioned && p.length === 3
        && p[2] === 'messages') {
        return sendMessage(call, req, p[1]);
    }
    if (req.method === 'GET' && versioned && p.length === 2) {
        return mediaInfo(req, p[1]);
    }
    if (req.method === 'DELETE' && versioned && p.length === 2) {
        if (!anyToken(bearer(req))) return unauthorized();
        if (!media[p[1]]) return invalid(`media ${p[1]} does not exist`);
        delete media[p[1]];
        return { status: 200, body: { success: true }, outcome: 'deleted' };
    }
    if (req.method === 'GET' && p[0] === 'media-download' && p.length === 2) {
        return download(req, p[1], call.query);
    }
    return { ...graphError(2500, { message:
        `Unknown path components: ${call.path}` }), outcome: 'unknown' };
}

// --- statuses webhooks, as Meta sends them after a send
function statusValue(phoneId, id, waId, status, category, opaque) {
    const s = { id, status, timestamp: String(Math.floor(now())),
                recipient_id: waId };
    // Meta echoes the send's biz_opaque_callback_data in its statuses
    if (opaque !== undefined) s.biz_opaque_callback_data = opaque;
    if (status === 'sent' || status === 'delivered') {
        s.conversation = { id: crypto.randomBytes(16).toString('hex'),
                           origin: { type: category } };
        if (status === 'sent') {
            s.conversation.expiration_timestamp =
                String(Math.floor(now()) + 86400);
        }
        s.pricing = { billable: true, pricing_model: 'CBP', category };
    }
    if (status === 'failed') {
        const e = auto.error || { code: 131026,
                                  title: FB_ERRORS[131026][1] };
        s.errors = [{ code: e.code, title: e.title, message: e.title,
                      error_data: { details: e.details || e.title } }];
    }
    return {
        object: 'whatsapp_business_account',
        entry: [{ id: auto.wabaId || '102290129340398', changes: [{
            value: { messaging_product: 'whatsapp',
                     metadata: { display_phone_number:
                                     auto.displayPhoneNumber || '15550783881',
                                 phone_number_id: phoneId },
                     statuses: [s] },
            field: 'messages' }] }],
    };
}

function autoStatuses(phoneId, id, waId, type, opaque) {
    if (!auto || !auto.url) return;
    const a = auto;
    const category = type === 'template' ? 'utility' : 'service';
    const statuses = a.statuses || ['sent', 'delivered', 'read'];
    const delay = a.delay === undefined ? 10 : Number(a.delay);
    statuses.forEach((status, i) => setTimeout(() => {
        if (a !== auto) return;    // reset or reconfigured meanwhile
        fake.post('auto-status', {
            url: a.url, secret: a.appSecret,
            payload: statusValue(phoneId, id, waId, status, category,
                                 opaque),
        });
    }, delay * (i + 1)));
}

const fake = new Fake({
    name: 'whatsapp',
    userAgent: 'facebookexternalua',
    handle,
    reset() {
        tokens = {};
        media = {};
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
            for (const [id, t] of Object.entries(b.tokens)) {
                tokens[id] = [].concat(t);
            }
            return json(200, { tokens });
        },
        'POST media': (b) => {
            const bytes = typeof b.base64 === 'string'
                ? Buffer.from(b.base64, 'base64') : Buffer.from(b.text || '');
            const id = b.id ? String(b.id)
                : String(1e15 + Math.floor(Math.random() * 9e15));
            const m = {
                mime_type: b.mimeType || 'application/octet-stream', bytes,
                sha256: crypto.createHash('sha256').update(bytes)
                    .digest('hex'),
                file_size: bytes.length,
                ext: Math.floor(now()) + 300,
                hash: crypto.randomBytes(8).toString('hex'),
            };
            media[id] = m;
            return json(200, { id, mime_type: m.mime_type, sha256: m.sha256,
                               file_size: m.file_size });
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
