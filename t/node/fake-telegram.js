// A fake Telegram Bot API for the suites: the shapes of
// ../shared/PROTOCOLS.md section 3.  Started from Perl by
// Orbit::Fake->start('telegram') (t/lib/Orbit/Fake.pm; the update builders
// are t/lib/Orbit/FakeTelegram.pm's); the recording, forced answers, delay
// and emit are fake-common.js's, documented there.
//
// The Bot API, as the fake answers it (GET or POST; parameters in the query
// string, a JSON body or a form body, as Telegram takes them):
//   /bot<TOKEN>/<METHOD>
//     TOKEN not "<digits>:<[A-Za-z0-9_-]+>": 404 {"ok":false,"error_code":
//     404,"description":"Not Found"}; a well-formed TOKEN of no bot
//     configured: 401 {"ok":false,"error_code":401,"description":
//     "Unauthorized"}; an unknown METHOD: 404 "Not Found".
//     Errors are {"ok":false,"error_code":N,"description":"..."} with
//     "parameters":{"retry_after":s} on a 429; successes {"ok":true,
//     "result":...}.
//   getMe -> User {id, is_bot:true, first_name, username}
//   setWebhook {url, secret_token?, allowed_updates?, max_connections?,
//     drop_pending_updates?} -> true, "description":"Webhook was set".
//     url: HTTPS on port 443, 80, 88 or 8443 ("Bad Request: bad webhook:
//     An HTTPS URL must be provided for webhook"; the suites' nginx speaks
//     HTTP: POST /__control/config {"allowHttp":true}); secret_token 1-256
//     of [A-Za-z0-9_-]; allowed_updates an array of update kinds;
//     max_connections 1-100.  An empty url deletes the webhook.
//   deleteWebhook -> true; getWebhookInfo -> {url, has_custom_certificate,
//     pending_update_count, allowed_updates?}
//   sendMessage {chat_id, text (1-4096 characters), parse_mode?,
//     reply_parameters?: {message_id, allow_sending_without_reply?}}
//   sendPhoto|sendDocument|sendVideo|sendAudio|sendVoice|sendSticker
//     {chat_id, photo|document|...: an http(s) URL or a file_id, caption?
//     (up to 1024 characters; none for stickers), reply_parameters?}
//   sendLocation {chat_id, latitude, longitude, reply_parameters?}
//     -> the Message sent: {message_id (the chat's next), from: the bot,
//     chat, date, text | photo[] | document | ..., caption?,
//     reply_to_message?}.  Checked as Telegram does: chat_id given ("Bad
//     Request: chat_id is empty") and a chat the bot knows (one an update
//     came from, or POST /__control/chat; else "Bad Request: chat not
//     found"); a chat that blocked the bot: 403 "Forbidden: bot was
//     blocked by the user"; reply_parameters.message_id of a message of
//     that chat unless allow_sending_without_reply ("Bad Request: message
//     to be replied not found").
//   getFile {file_id} -> {file_id, file_unique_id, file_size, file_path};
//     unknown: 400 "Bad Request: invalid file_id"; over 20 MB: 400 "Bad
//     Request: file is too big"
//   GET /file/bot<TOKEN>/<file_path>: the bytes; unknown: 404
// Outcomes of calls: me, webhook, sent, file, download, unauthorized,
// invalid, blocked, unknown (and forced, hang, close).  A "sent" call also
// has "message" (the Message answered).
//
// Control, besides fake-common.js's:
//   POST /__control/bots {"bots":[{"token","firstName"?,"username"?}]}
//        -> {"bots":{TOKEN:{id,...}}}: the bots the fake knows (a bot
//        known already keeps its webhook and chats)
//   POST /__control/config {"allowHttp":true}   webhooks on http:// too
//   GET  /__control/webhook?token=T   {"webhook":{"url","secret_token",
//        "allowed_updates",...}|null}
//   POST /__control/chat {"token","chat":{"id","type","first_name",...},
//        "blocked":bool}   a chat the bot knows (blocked: it blocked the bot)
//   POST /__control/file {"token","base64"|"text","fileId"?,"filePath"?,
//        "fileSize"? (as getFile reports it)} -> {"file_id",
//        "file_unique_id","file_size","file_path"}
//   POST /__control/update {"token","update":{...},"secret"?,"url"?,
//        "headers"?,"timeout"?}
//        POSTs the Update, as Telegram does, to the webhook setWebhook
//        registered for the bot (or "url"), with X-Telegram-Bot-Api-Secret-
//        Token: the registered secret_token ("secret": that one instead,
//        null: none).  Its chat and its messages become known to the bot.
//        Answers like emit: {"status","headers","body","sent":{"body"}}, or
//        {"status":null,"error"}; 409 when no webhook is set and no "url".
//   Forced answers may name a Bot API error: {"error":429,"retryAfter":2}
//   (also 400 401 403 404 409 500 502; "description" overrides).
'use strict';

const crypto = require('crypto');
const { Fake, json, isObject, now } = require('./fake-common');

const ERRORS = {
    400: 'Bad Request',
    401: 'Unauthorized',
    403: 'Forbidden: bot was blocked by the user',
    404: 'Not Found',
    409: 'Conflict: terminated by other getUpdates request; make sure that'
        + ' only one bot instance is running',
    429: 'Too Many Requests: retry after %d',
    500: 'Internal Server Error',
    502: 'Bad Gateway',
};

const FILE_MAX = 20 * 1024 * 1024;
const KINDS = ['message', 'edited_message', 'channel_post',
               'edited_channel_post', 'business_connection',
               'business_message', 'edited_business_message',
               'deleted_business_messages', 'message_reaction',
               'message_reaction_count', 'inline_query',
               'chosen_inline_result', 'callback_query', 'shipping_query',
               'pre_checkout_query', 'purchased_paid_media', 'poll',
               'poll_answer', 'my_chat_member', 'chat_member',
               'chat_join_request', 'chat_boost', 'removed_chat_boost'];
const MEDIA = { sendPhoto: 'photo', sendDocument: 'document',
                sendVideo: 'video', sendAudio: 'audio', sendVoice: 'voice',
                sendSticker: 'sticker' };

function tgError(code, description, o = {}) {
    const body = { ok: false, error_code: code,
                   description: description
                       || (ERRORS[code] || 'Error').replace('%d',
                                                  o.retryAfter || 1) };
    if (code === 429) body.parameters = { retry_after: o.retryAfter || 1 };
    return { status: code, body, outcome: o.outcome };
}

const bad = (what) => tgError(400, `Bad Request: ${what}`,
                              { outcome: 'invalid' });
const ok = (result, extra = {}) => ({ status: 200, outcome: extra.outcome,
    body: { ok: true, result,
            ...(extra.description ? { description: extra.description }
                                  : {}) } });
const chars = (s) => [...s].length;

// --- state (cleared by reset)
let bots, files, allowHttp;

function bot(token) {
    if (!bots[token]) return null;
    return bots[token];
}

function botUser(b) {
    return { id: b.id, is_bot: true, first_name: b.firstName,
             username: b.username };
}

// the parameters of a call: query, then a JSON or form body
function params(call, req) {
    const p = { ...call.query };
    const type = req.headers['content-type'] || '';
    if (/^application\/json\b/i.test(type) && isObject(call.json)) {
        Object.assign(p, call.json);
    } else if (/^application\/x-www-form-urlencoded\b/i.test(type)) {
        Object.assign(p, Object.fromEntries(new URLSearchParams(call.body)));
    }
    for (const k of ['reply_parameters', 'allowed_updates']) {
        if (typeof p[k] === 'string') {
            try { p[k] = JSON.parse(p[k]); } catch (e) { /* as it is */ }
        }
    }
    return p;
}

function setWebhook(b, p) {
    if (p.url === undefined || p.url === '') {
        b.webhook = null;
        return ok(true, { description: 'Webhook was deleted',
                          outcome: 'webhook' });
    }
    let u;
    try { u = new URL(String(p.url)); } catch (e) {
        return bad('bad webhook: Failed to resolve host: Name or service'
                   + ' not known');
    }
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    if (u.protocol !== 'https:' && !(allowHttp && u.protocol === 'http:')) {
        return bad('bad webhook: An HTTPS URL must be provided for webhook');
    }
    if (!allowHttp && !['443', '80', '88', '8443'].includes(port)) {
        return bad('bad webhook: Webhook can be set up only on ports 80, 88,'
                   + ' 443 or 8443');
    }
    if (p.secret_token !== undefined
        && !/^[A-Za-z0-9_-]{1,256}$/.test(String(p.secret_token))) {
        return bad('secret token contains unallowed characters');
    }
    if (p.allowed_updates !== undefined
        && !(Array.isArray(p.allowed_updates)
             && p.allowed_updates.every((k) => KINDS.includes(k)))) {
        return bad("can't parse allowed updates");
    }
    if (p.max_connections !== undefined
        && !(Number(p.max_connections) >= 1
             && Number(p.max_connections) <= 100)) {
        return bad('bad maximum connection number');
    }
    b.webhook = { url: String(p.url), secret_token: p.secret_token,
                  allowed_updates: p.allowed_updates,
                  max_connections: p.max_connections ?? 40 };
    return ok(true, { description: 'Webhook was set', outcome: 'webhook' });
}

function chatOf(b, id) {
    return b.chats[String(id)] || null;
}

// what a send names: its chat, or the error
function target(b, p) {
    if (p.chat_id === undefined || p.chat_id === '') {
        return { error: bad('chat_id is empty') };
    }
    const chat = chatOf(b, p.chat_id);
    if (!chat) return { error: bad('chat not found') };
    if (chat.blocked) {
        return { error: tgError(403, null, { outcome: 'blocked' }) };
    }
    const rp = p.reply_parameters;
    if (rp !== undefined) {
        if (!isObject(rp) || !Number.isInteger(rp.message_id)) {
            return { error: bad("can't parse reply parameters JSON object") };
        }
        if (!chat.messages[rp.message_id]
            && !rp.allow_sending_without_reply) {
            return { error: bad('message to be replied not found') };
        }
    }
    return { chat };
}

function send(call, b, method, p) {
    const t = target(b, p);
    if (t.error) return t.error;
    const { chat } = t;
    const m = { message_id: ++chat.lastId, from: botUser(b),
                chat: chat.info, date: Math.floor(now()) };
    if (method === 'sendMessage') {
        if (typeof p.text !== 'string' || p.text.length === 0) {
            return bad('message text is empty');
        }
        if (chars(p.text) > 4096) return bad('message is too long');
        if (p.parse_mode !== undefined
            && !['HTML', 'MarkdownV2', 'Markdown'].includes(p.parse_mode)) {
            return bad('unsupported parse_mode');
        }
        m.text = p.text;
    } else if (method === 'sendLocation') {
        const lat = Number(p.latitude);
        const lon = Number(p.longitude);
        if (p.latitude === undefined || p.longitude === undefined
            || !(Math.abs(lat) <= 90) || !(Math.abs(lon) <= 180)) {
            return bad('wrong latitude or longitude');
        }
        m.location = { latitude: lat, longitude: lon };
    } else {
        const field = MEDIA[method];
        const v = p[field];
        if (typeof v !== 'string' || v === '') {
            return bad(`there is no ${field} in the request`);
        }
        if (/^https?:/.test(v) && !/^https?:\/\/[^\s/]+\/\S*$/.test(v)) {
            return bad('wrong HTTP URL specified');
        }
        if (!/^https?:\/\//.test(v) && !files[v]) {
            return bad('wrong remote file identifier specified: Wrong'
                       + ' string length');
        }
        if (p.caption !== undefined) {
            if (field === 'sticker') return bad("can't parse caption");
            if (chars(String(p.caption)) > 1024) {
                return bad('message caption is too long');
            }
            m.caption = String(p.caption);
        }
        const file = { file_id: 'F' + crypto.randomBytes(12).toString('hex'),
                       file_unique_id: crypto.randomBytes(6)
                           .toString('hex') };
        m[field] = field === 'photo'
            ? [{ ...file, width: 90, height: 90 },
               { ...file, width: 800, height: 800 }]
            : file;
    }
    if (p.reply_parameters && chat.messages[p.reply_parameters.message_id]) {
        m.reply_to_message = chat.messages[p.reply_parameters.message_id];
    }
    chat.messages[m.message_id] = { ...m, reply_to_message: undefined };
    call.message = m;
    return ok(m, { outcome: 'sent' });
}

function getFile(p) {
    const f = files[p.file_id];
    if (typeof p.file_id !== 'string' || !f) return bad('invalid file_id');
    if (f.fileSize > FILE_MAX) return bad('file is too big');
    return ok({ file_id: p.file_id, file_unique_id: f.uniqueId,
                file_size: f.fileSize, file_path: f.path },
              { outcome: 'file' });
}

function handle(call, req) {
    let m = /^\/bot([^/]*)\/([^/]+)$/.exec(call.path);
    if (m) {
        const token = decodeURIComponent(m[1]);
        const method = m[2];
        if (!/^\d+:[A-Za-z0-9_-]+$/.test(token)) {
            return tgError(404, null, { outcome: 'unknown' });
        }
        const b = bot(token);
        if (!b) return tgError(401, null, { outcome: 'unauthorized' });
        const p = params(call, req);
        if (method === 'getMe') return ok(botUser(b), { outcome: 'me' });
        if (method === 'setWebhook') return setWebhook(b, p);
        if (method === 'deleteWebhook') {
            b.webhook = null;
            return ok(true, { description: 'Webhook was deleted',
                              outcome: 'webhook' });
        }
        if (method === 'getWebhookInfo') {
            const w = b.webhook;
            return ok({ url: w ? w.url : '', has_custom_certificate: false,
                        pending_update_count: 0,
                        ...(w && w.allowed_updates
                            ? { allowed_updates: w.allowed_updates } : {}) },
                      { outcome: 'webhook' });
        }
        if (method === 'getFile') return getFile(p);
        if (method === 'sendMessage' || method === 'sendLocation'
            || MEDIA[method]) {
            return send(call, b, method, p);
        }
        return tgError(404, null, { outcome: 'unknown' });
    }
    m = /^\/file\/bot([^/]+)\/(.+)$/.exec(call.path);
    if (m && req.method === 'GET') {
        const b = bot(decodeURIComponent(m[1]));
        const f = Object.values(files).find((x) =>
            x.path === decodeURIComponent(m[2]) && b && x.token === b.token);
        if (!f) return { status: 404, body: 'Not Found', outcome: 'unknown' };
        return { status: 200, body: f.bytes, outcome: 'download',
                 headers: { 'Content-Type': 'application/octet-stream' } };
    }
    return tgError(404, null, { outcome: 'unknown' });
}

// the chat and messages of an update, known to the bot from now on
function learn(b, update) {
    for (const k of ['message', 'edited_message']) {
        const msg = update[k];
        if (!isObject(msg) || !isObject(msg.chat)) continue;
        const id = String(msg.chat.id);
        const chat = b.chats[id] || (b.chats[id] = {
            info: msg.chat, messages: {}, lastId: 0, blocked: false });
        if (Number.isInteger(msg.message_id)) {
            chat.messages[msg.message_id] = msg;
            chat.lastId = Math.max(chat.lastId, msg.message_id);
        }
    }
}

const fake = new Fake({
    name: 'telegram',
    userAgent: 'TelegramBot (like TwitterBot)',
    handle,
    reset() {
        bots = {};
        files = {};
        allowHttp = false;
    },
    forced(item) {
        if (item.error === undefined) return null;
        const a = tgError(Number(item.error), item.description,
                          { retryAfter: item.retryAfter });
        return { ...a, headers: item.headers };
    },
    control: {
        'POST bots': (b) => {
            if (!Array.isArray(b.bots)) {
                return json(400, { error: '"bots" must be an array' });
            }
            for (const o of b.bots) {
                const token = String(o.token || '');
                if (!/^\d+:[A-Za-z0-9_-]+$/.test(token)) {
                    return json(400, { error: `bad token ${token}` });
                }
                const id = Number(token.split(':')[0]);
                if (bots[token]) continue;      // known: kept as it is
                bots[token] = { token, id,
                                firstName: o.firstName || 'Orbit Bot',
                                username: o.username || `orbit${id}_bot`,
                                webhook: null, chats: {} };
            }
            return json(200, { bots: Object.fromEntries(
                Object.entries(bots).map(([t, x]) => [t, botUser(x)])) });
        },
        'POST config': (b) => {
            allowHttp = !!b.allowHttp;
            return json(200, { allowHttp });
        },
        'GET webhook': (b, q) => {
            const x = bot(q.token);
            if (!x) return json(404, { error: 'no such bot' });
            return json(200, { webhook: x.webhook });
        },
        'POST chat': (b) => {
            const x = bot(b.token);
            if (!x || !isObject(b.chat) || b.chat.id === undefined) {
                return json(400, { error: 'a bot\'s "token" and "chat"' });
            }
            const id = String(b.chat.id);
            const chat = x.chats[id] || (x.chats[id] = {
                info: b.chat, messages: {}, lastId: 0, blocked: false });
            chat.blocked = !!b.blocked;
            return json(200, { chat: chat.info, blocked: chat.blocked });
        },
        'POST file': (b) => {
            const x = bot(b.token);
            if (!x) return json(400, { error: 'no such bot' });
            const bytes = typeof b.base64 === 'string'
                ? Buffer.from(b.base64, 'base64') : Buffer.from(b.text || '');
            const fileId = b.fileId
                || 'AgAC' + crypto.randomBytes(24).toString('base64url');
            const f = { token: x.token, bytes,
                        uniqueId: crypto.randomBytes(6).toString('hex'),
                        path: b.filePath || `photos/file_${
                            Object.keys(files).length}.jpg`,
                        fileSize: b.fileSize ?? bytes.length };
            files[fileId] = f;
            return json(200, { file_id: fileId, file_unique_id: f.uniqueId,
                               file_size: f.fileSize, file_path: f.path });
        },
        'POST update': async (b) => {
            const x = bot(b.token);
            if (!x) return json(400, { error: 'no such bot' });
            if (!isObject(b.update) && typeof b.update !== 'string') {
                return json(400, { error: '"update" must be an object' });
            }
            const url = b.url || (x.webhook && x.webhook.url);
            if (!url) return json(409, { error: 'no webhook is set' });
            const secret = b.secret !== undefined ? b.secret
                : x.webhook && x.webhook.secret_token;
            const headers = { ...(b.headers || {}) };
            if (secret !== null && secret !== undefined) {
                headers['X-Telegram-Bot-Api-Secret-Token'] = secret;
            }
            if (isObject(b.update)) learn(x, b.update);
            return json(200, await fake.post('update', {
                url, payload: b.update, signature: null, headers,
                timeout: b.timeout }));
        },
    },
});

fake.listen();
