#!/usr/bin/python3
# A real SMTP server for the suites (Debian's python3-aiosmtpd), started by
# t/lib/Orbit/Mail.pm: every mail it accepts is written to the spool folder
# as NAME.eml (the bytes received after DATA) and NAME.json (the envelope:
# from, to, whether the client logged in), the .json last.
#
#   smtpd.py --port N --spool DIR [--auth USER:PASSWORD]
#
# --auth: AUTH PLAIN/LOGIN offered (without TLS) and required.  A file
# DIR/force-data holding an SMTP reply ("554 5.7.1 No thanks") makes the
# server answer DATA with it instead of accepting the mail.

import argparse
import json
import os
import signal
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Spool:
    def __init__(self, spool):
        self.spool = spool
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        force = os.path.join(self.spool, 'force-data')
        if os.path.exists(force):
            with open(force) as f:
                reply = f.read().strip()
            if reply:
                return reply

        self.n += 1
        name = '%d-%04d' % (int(time.time() * 1000), self.n)
        base = os.path.join(self.spool, name)
        with open(base + '.eml', 'wb') as f:
            f.write(envelope.original_content or b'')
        meta = {'from': envelope.mail_from, 'to': envelope.rcpt_tos,
                'authenticated': bool(getattr(session, 'authenticated',
                                              False))}
        with open(base + '.tmp', 'w') as f:
            json.dump(meta, f)
        os.rename(base + '.tmp', base + '.json')
        return '250 2.0.0 Ok: queued as ' + name


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == user
              and auth_data.password.decode() == password)
        return AuthResult(success=ok)
    return check


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--spool', required=True)
    ap.add_argument('--auth')
    a = ap.parse_args()

    kw = {}
    if a.auth:
        user, password = a.auth.split(':', 1)
        kw = dict(authenticator=authenticator(user, password),
                  auth_required=True, auth_require_tls=False)

    ctl = Controller(Spool(a.spool), hostname='127.0.0.1', port=a.port,
                     server_hostname='smtp.orbit.test', **kw)
    ctl.start()
    print('listening', a.port, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    ctl.stop()


if __name__ == '__main__':
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
