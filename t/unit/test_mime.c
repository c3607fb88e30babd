/*
 * Unit tests of src/core/orbit_mime.c: the reply built (headers, parts,
 * quoted-printable, encoded words) and read back; header injection
 * through names, subjects, addresses, ids and references impossible;
 * parsing of real-world shapes (folding, encoded words in several
 * charsets, nested multiparts, base64, ISO-8859-1, HTML only, RFC 2231
 * names); malformed input and every truncation of a message parsed
 * without a crash (run it under ASan: make CFLAGS+=-fsanitize=address).
 */

#include <stdlib.h>

#include "unit.h"
#include "core/orbit_mime.h"


static orbit_mime_out_t
out_base(void)
{
    orbit_mime_out_t  m;

    memset(&m, 0, sizeof(orbit_mime_out_t));
    m.from_name = "Acme Support";
    m.from_addr = "desk@acme.test";
    m.to_addr = "ana@cust.test";
    m.subject = "Re: Order 1234";
    m.message_id = "<42@acme.test>";
    m.in_reply_to = "<m1@cust.test>";
    m.references = "<m0@cust.test> <m1@cust.test>";
    m.text = "Hello = you\nsecond line";
    m.boundary = "=_orbit_42";
    m.date = 1700000000;

    return m;
}


/* the header block of a built mail: no line but its own fields */
static int
head_clean(const char *mail, const char *bad)
{
    const char  *end, *p;

    end = strstr(mail, "\r\n\r\n");
    if (end == NULL) {
        return 0;
    }

    for (p = mail; p < end; p = strstr(p, "\r\n") + 2) {
        if (strncasecmp(p, bad, strlen(bad)) == 0) {
            return 0;
        }

        if (strstr(p, "\r\n") == NULL) {
            break;
        }
    }

    /* no bare CR or LF anywhere in the header */
    for (p = mail; p < end; p++) {
        if ((*p == '\r' && p[1] != '\n') || (*p == '\n' && p[-1] != '\r')) {
            return 0;
        }
    }

    return 1;
}


static void
test_build(void)
{
    char              *mail;
    size_t             len;
    orbit_mime_t       r;
    orbit_mime_out_t   m;

    m = out_base();

    UNIT_OK(orbit_mime_build(&m, &mail, &len) == 0, "build: a reply");
    UNIT_OK(strstr(mail, "From: \"Acme Support\" <desk@acme.test>\r\n")
            == mail, "build: From first, quoted name");
    UNIT_OK(strstr(mail, "\r\nTo: ana@cust.test\r\n") != NULL, "build: To");
    UNIT_OK(strstr(mail, "\r\nSubject: Re: Order 1234\r\n") != NULL,
            "build: Subject");
    UNIT_OK(strstr(mail, "\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n")
            != NULL, "build: Date");
    UNIT_OK(strstr(mail, "\r\nMessage-ID: <42@acme.test>\r\n"
                         "In-Reply-To: <m1@cust.test>\r\n"
                         "References: <m0@cust.test>\r\n <m1@cust.test>\r\n")
            != NULL, "build: Message-ID, In-Reply-To, folded References");
    UNIT_OK(strstr(mail, "Content-Type: multipart/alternative; boundary="
                         "\"=_orbit_42\"") != NULL, "build: multipart");
    UNIT_OK(strstr(mail, "Hello =3D you\r\nsecond line\r\n--=_orbit_42\r\n"
                         "Content-Type: text/html") != NULL,
            "build: text/plain in quoted-printable, CRLF lines");
    UNIT_OK(strstr(mail, "<body><p>Hello =3D you<br>") != NULL,
            "build: text/html of the escaped text");
    UNIT_OK(len >= 16 && strcmp(mail + len - 16, "--=_orbit_42--\r\n") == 0,
            "build: closed");

    UNIT_OK(orbit_mime_parse(mail, len, &r) == 0, "build: parses back");
    UNIT_STR(r.subject, strlen(r.subject), "Re: Order 1234",
             "round trip: subject");
    UNIT_STR(r.text, strlen(r.text), "Hello = you\nsecond line",
             "round trip: text");
    UNIT_STR(r.from_name, strlen(r.from_name), "Acme Support",
             "round trip: name");
    UNIT_OK(r.references && strcmp(r.references,
                                   "<m0@cust.test> <m1@cust.test>") == 0,
            "round trip: references");
    UNIT_OK(r.date == 1700000000, "round trip: date");
    orbit_mime_free(&r);
    free(mail);

    /* UTF-8 names and subjects: encoded words that decode back */

    m.from_name = "J\xc3\xbcrgen \xe2\x82\xac";
    m.subject = "Caf\xc3\xa9 \xe2\x80\x93 a subject long enough to need "
                "more than one encoded word, surely \xc3\xa9\xc3\xa9";
    m.html = "<b>bold</b>";

    UNIT_OK(orbit_mime_build(&m, &mail, &len) == 0, "build: UTF-8");
    UNIT_OK(strstr(mail, "From: =?UTF-8?B?") == mail,
            "build: a UTF-8 name is an encoded word");
    UNIT_OK(strstr(mail, "\r\nSubject: =?UTF-8?B?") != NULL
            && strstr(mail, "?=\r\n =?UTF-8?B?") != NULL,
            "build: a long subject, folded words");
    UNIT_OK(strstr(mail, "<b>bold</b>") != NULL, "build: content.html");
    UNIT_OK(orbit_mime_parse(mail, len, &r) == 0
            && strcmp(r.subject, m.subject) == 0
            && strcmp(r.from_name, m.from_name) == 0,
            "build: encoded words decode back to the same UTF-8");
    orbit_mime_free(&r);
    free(mail);
}


static void
test_injection(void)
{
    char              *mail;
    size_t             len;
    orbit_mime_out_t   m;

    m = out_base();
    m.from_name = "Evil\r\nBcc: spy@evil.test";
    m.subject = "Hi\r\nBcc: spy@evil.test\nX-Y: z\r";
    m.references = "<ok@x.test> <bad\r\nBcc: a@b>  <x@y\r\n> <z@w>";

    UNIT_OK(orbit_mime_build(&m, &mail, &len) == 0,
            "inject: CR LF in name, subject, references: built");
    UNIT_OK(head_clean(mail, "Bcc:") && head_clean(mail, "X-Y:"),
            "inject: no header of theirs, no bare CR or LF");
    UNIT_OK(strstr(mail, "References: <ok@x.test>\r\n <z@w>\r\n") != NULL,
            "inject: only well-formed references kept");
    free(mail);

    m = out_base();
    m.to_addr = "ana@cust.test\r\nBcc: spy@evil.test";
    UNIT_OK(orbit_mime_build(&m, &mail, &len) == -1,
            "inject: CR LF in an address: refused");

    m = out_base();
    m.to_addr = "Ana <ana@cust.test>";
    UNIT_OK(orbit_mime_build(&m, &mail, &len) == -1,
            "inject: specials in an address: refused");

    m = out_base();
    m.message_id = "<1@a>\r\nBcc: x@y";
    UNIT_OK(orbit_mime_build(&m, &mail, &len) == -1,
            "inject: CR LF in the Message-ID: refused");

    m = out_base();
    m.in_reply_to = "<a@b>\r\nBcc: x@y";
    UNIT_OK(orbit_mime_build(&m, &mail, &len) == 0
            && strstr(mail, "In-Reply-To") == NULL && head_clean(mail, "Bcc"),
            "inject: a bad In-Reply-To is left out");
    free(mail);

    m = out_base();
    m.boundary = "=_x\r\nBcc: y";
    UNIT_OK(orbit_mime_build(&m, &mail, &len) == -1,
            "inject: a bad boundary: refused");

    UNIT_OK(orbit_mime_addr_ok("a@b.c") && !orbit_mime_addr_ok("a b@c")
            && !orbit_mime_addr_ok("@b.c") && !orbit_mime_addr_ok("a@")
            && !orbit_mime_addr_ok("a@b@c") && !orbit_mime_addr_ok("a\xc3@b"),
            "addr_ok");
}


static const char  mail_nested[] =
    "From: =?ISO-8859-1?Q?Andr=E9?=\r\n \"Pirard\" <PIRARD@Vm1.ULG.ac.be>\r\n"
    "To: a@b.test,\r\n\tc@d.test\r\n"
    "Cc: =?utf-8?q?Z=C3=BC?= <z@z.test>\r\n"
    "Subject: =?utf-8?b?SGVsbG8g?=\r\n =?utf-8?q?W=C3=B6rld?= and more\r\n"
    "Message-ID:\r\n <abc@x.test>\r\n"
    "In-Reply-To: <p1@x.test> (comment)\r\n"
    "References: <p0@x.test>\r\n\t<p1@x.test>\r\n"
    "Date: Mon, 1 Jan 2024 12:00:00 +0200\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed;\r\n boundary=\"out er\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--out er\r\n"
    "Content-Type: multipart/alternative; boundary=inner\r\n"
    "\r\n"
    "--inner\r\n"
    "Content-Type: text/html; charset=\"iso-8859-1\"\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "<p>Caf=E9</p>\r\n"
    "--inner\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Caf=E9 and a soft =\r\nbreak, =93quoted=94\r\n"
    "--inner--\r\n"
    "--out er\r\n"
    "Content-Type: image/png\r\n"
    "Content-Disposition: attachment;\r\n"
    " filename*=UTF-8''%C3%A9t%C3%A9.png\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "iVBORw0K\r\nGgo=\r\n"
    "--out er--\r\n"
    "epilogue\r\n";


static void
test_parse(void)
{
    orbit_mime_t  r;
    const char   *html_only;

    UNIT_OK(orbit_mime_parse(mail_nested, sizeof(mail_nested) - 1, &r) == 0,
            "parse: nested multiparts");
    UNIT_STR(r.subject, strlen(r.subject), "Hello W\xc3\xb6rld and more",
             "parse: folded subject, adjacent encoded words joined");
    UNIT_STR(r.from_name, strlen(r.from_name), "Andr\xc3\xa9 Pirard",
             "parse: From's name, ISO-8859-1 Q word and a quoted word");
    UNIT_STR(r.from_addr, strlen(r.from_addr), "pirard@vm1.ulg.ac.be",
             "parse: From's address, lowercased");
    UNIT_STR(r.to, strlen(r.to), "a@b.test, c@d.test", "parse: To unfolded");
    UNIT_STR(r.cc, strlen(r.cc), "Z\xc3\xbc <z@z.test>", "parse: Cc decoded");
    UNIT_OK(r.message_id && strcmp(r.message_id, "<abc@x.test>") == 0,
            "parse: a folded Message-ID");
    UNIT_OK(r.in_reply_to && strcmp(r.in_reply_to, "<p1@x.test>") == 0,
            "parse: In-Reply-To");
    UNIT_OK(r.references
            && strcmp(r.references, "<p0@x.test> <p1@x.test>") == 0,
            "parse: References");
    UNIT_OK(r.date == 1704103200, "parse: Date with its zone");
    UNIT_STR(r.text, strlen(r.text), "Caf\xc3\xa9 and a soft break, "
             "\xe2\x80\x9cquoted\xe2\x80\x9d",
             "parse: text/plain preferred, quoted-printable, latin1/cp1252");
    UNIT_OK(r.html && strcmp(r.html, "<p>Caf\xc3\xa9</p>") == 0,
            "parse: the html kept");
    UNIT_OK(r.natts == 1 && strcmp(r.atts[0].name, "\xc3\xa9t\xc3\xa9.png")
            == 0 && strcmp(r.atts[0].type, "image/png") == 0
            && r.atts[0].size == 8,
            "parse: the attachment, RFC 2231 name, decoded size");
    orbit_mime_free(&r);

    html_only = "From: x@y.test\nSubject: hi\nContent-Type: text/html\n\n"
                "<html><head><style>p{}</style></head><body><p>One &amp; "
                "two</p><p>Three&nbsp;&#8364; &#x41;</p><script>x</script>"
                "</body></html>\n";

    UNIT_OK(orbit_mime_parse(html_only, strlen(html_only), &r) == 0,
            "parse: HTML only, LF lines");
    UNIT_STR(r.text, strlen(r.text), "One & two\nThree\xc2\xa0\xe2\x82\xac A",
             "parse: HTML stripped to text");
    orbit_mime_free(&r);

    UNIT_OK(orbit_mime_parse("Subject: x\r\n\r\n\xff\xfe ok\r\n", 21, &r)
            == 0 && strcmp(r.text, "\xef\xbf\xbd\xef\xbf\xbd ok") == 0
            && r.from_addr == NULL && r.message_id == NULL,
            "parse: invalid UTF-8 replaced, no From, no id");
    orbit_mime_free(&r);
}


static void
test_malformed(void)
{
    int            ok;
    char          *buf;
    size_t         i, n;
    orbit_mime_t   r;

    static const char  *bad[] = {
        "",
        ":",
        "\r\n",
        "From: <\r\nSubject: =?\r\n\r\n",
        "Subject: =?utf-8?b?\r\n\r\n",
        "Subject: =?utf-8?x?abc?=\r\n\r\n",
        "Subject: =?utf-8?q?=E\r\n\r\n",
        "From: \"unterminated <a@b>\r\n\r\n",
        "Content-Type: multipart/mixed; boundary=\"b\r\n\r\n--b\r\n",
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b",
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n"
        "\r\n====\r\n",
        "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-"
        "printable\r\n\r\n=\r\n=4\r\n=ZZ=",
        "Content-Type: text/plain; charset*=''\r\n\r\nx",
        "Content-Disposition: attachment; filename*=%\r\n\r\nx",
        "Content-Type: text/html\r\n\r\n<p &#99999999999; &#x; &;<",
        "Date: Mon, 99 Foo 1 25:61:61 +99\r\n\r\n",
        NULL
    };

    ok = 1;

    for (i = 0; bad[i]; i++) {
        if (orbit_mime_parse(bad[i], strlen(bad[i]), &r) != 0) {
            ok = 0;
            continue;
        }

        orbit_mime_free(&r);
    }

    UNIT_OK(ok, "malformed: each parses, no crash");

    /* every prefix of a real message, in an exact-size heap copy: an
     * overread shows under ASan */

    n = sizeof(mail_nested) - 1;
    ok = 1;

    for (i = 0; i <= n; i++) {
        buf = malloc(i ? i : 1);
        if (buf == NULL) {
            ok = 0;
            break;
        }

        memcpy(buf, mail_nested, i);

        if (orbit_mime_parse(buf, i, &r) != 0) {
            ok = 0;

        } else {
            orbit_mime_free(&r);
        }

        free(buf);
    }

    UNIT_OK(ok, "malformed: every truncation parses");

    /* deep nesting stops at ORBIT_MIME_DEPTH */

    {
        char  deep[4096], *p;

        p = deep;

        for (i = 0; i < 40; i++) {
            p += sprintf(p, "Content-Type: multipart/mixed; boundary=b%zu"
                         "\r\n\r\n--b%zu\r\n", i, i);
        }

        p += sprintf(p, "\r\nbottom\r\n");

        UNIT_OK(orbit_mime_parse(deep, p - deep, &r) == 0,
                "malformed: 40 levels deep, bounded");
        orbit_mime_free(&r);
    }
}


int
main(void)
{
    test_build();
    test_injection();
    test_parse();
    test_malformed();

    return unit_done();
}
