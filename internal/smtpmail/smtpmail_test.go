package smtpmail_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/cepcomunicacion/cepjobs/internal/smtpmail"
	"github.com/cepcomunicacion/cepjobs/internal/vendor"
)

var ana = smtpmail.Recipient{Email: "Ana.Garcia@Example.COM", Name: "Anabel Garcíaperez"}

// received is one message as the server got it.
type received struct {
	From string
	To   []string
	Data []byte
	TLS  bool // whether the message came over TLS
}

// server is a real SMTP server (emersion/go-smtp) on a loopback port that
// records what it accepts. Its fields, set before the first Send, make it
// refuse like real servers do.
type server struct {
	addr string
	// rcptErr and dataErr are returned from RCPT TO and DATA.
	rcptErr, dataErr error
	// user and pass, when set, make AUTH PLAIN required.
	user, pass string

	mu   sync.Mutex
	msgs []received
}

type serverOptions struct {
	tls      *tls.Config // offered by STARTTLS, or from the first byte with implicit
	implicit bool
	host     string // default 127.0.0.1
}

func startServer(t *testing.T, o serverOptions) *server {
	t.Helper()
	s := &server{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{s: s, conn: c}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.ErrorLog = nopLogger{}
	if o.host == "" {
		o.host = "127.0.0.1"
	}
	var l net.Listener
	var err error
	if o.implicit {
		l, err = tls.Listen("tcp", o.host+":0", o.tls)
	} else {
		srv.TLSConfig = o.tls
		l, err = net.Listen("tcp", o.host+":0")
	}
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *server) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

type session struct {
	s      *server
	conn   *smtp.Conn
	authed bool
	cur    received
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.user || pass != ss.s.pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.user != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.cur = received{From: from}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.rcptErr != nil {
		return ss.s.rcptErr
	}
	ss.cur.To = append(ss.cur.To, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.s.dataErr != nil {
		return ss.s.dataErr
	}
	ss.cur.Data = b
	_, ss.cur.TLS = ss.conn.TLSConnectionState()
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.cur)
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset()        { ss.cur = received{} }
func (ss *session) Logout() error { return nil }

func newClient(t *testing.T, url string, tlsConfig *tls.Config) *smtpmail.Client {
	t.Helper()
	c, err := smtpmail.New(smtpmail.Config{URL: url, From: "CEP Formación <no-reply@cepcomunicacion.com>"}, tlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func welcomeMessage() smtpmail.Message {
	subject, text, html := smtpmail.Welcome("Marketing Digital", "Anabel")
	return smtpmail.Message{
		To: ana, Subject: subject, Text: text, HTML: html,
		Headers: map[string]string{"Message-ID": "<lead-42.welcome@cepcomunicacion.com>", "X-Lead-Id": "42"},
	}
}

func assertNoPersonalData(t *testing.T, err error) {
	t.Helper()
	text := strings.ToLower(err.Error())
	for _, s := range []string{ana.Email, "example.com", "anabel", "garcíaperez", "s3cret"} {
		if strings.Contains(text, strings.ToLower(s)) {
			t.Errorf("error text %q holds %q", err, s)
		}
	}
}

func TestSend(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c := newClient(t, "smtp://"+s.addr, nil) // MailHog's form: no TLS offered, no auth
	id, err := c.Send(context.Background(), welcomeMessage())
	if err != nil {
		t.Fatal(err)
	}
	if want := "lead-42.welcome@cepcomunicacion.com"; id != want {
		t.Errorf("id: got %q, want %q", id, want)
	}
	msgs := s.received()
	if len(msgs) != 1 {
		t.Fatalf("messages: got %d, want 1", len(msgs))
	}
	got := msgs[0]
	if got.TLS {
		t.Errorf("came over TLS from a server that offers none")
	}
	if got.From != "no-reply@cepcomunicacion.com" || len(got.To) != 1 || got.To[0] != ana.Email {
		t.Errorf("envelope: got from %q to %q", got.From, got.To)
	}
	m, err := mail.ReadMessage(bytes.NewReader(got.Data))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	subject, _ := dec.DecodeHeader(m.Header.Get("Subject"))
	addr := func(h string) string {
		l, err := m.Header.AddressList(h)
		if err != nil || len(l) != 1 {
			return fmt.Sprintf("unparsable (%v)", err)
		}
		return l[0].Name + " / " + l[0].Address
	}
	for name, tc := range map[string][2]string{
		"Subject":    {subject, "Gracias por tu interés en Marketing Digital"},
		"From":       {addr("From"), "CEP Formación / no-reply@cepcomunicacion.com"},
		"To":         {addr("To"), "Anabel Garcíaperez / Ana.Garcia@Example.COM"},
		"Message-Id": {m.Header.Get("Message-Id"), "<lead-42.welcome@cepcomunicacion.com>"},
		"X-Lead-Id":  {m.Header.Get("X-Lead-Id"), "42"},
	} {
		if tc[0] != tc[1] {
			t.Errorf("%s: got %q, want %q", name, tc[0], tc[1])
		}
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("content type: got %q (%v), want multipart/alternative", mt, err)
	}
	var types []string
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
	}
	if strings.Join(types, ",") != "text/plain,text/html" {
		t.Errorf("parts: got %v, want text/plain then text/html", types)
	}
}

func TestSendGeneratesMessageID(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c := newClient(t, "smtp://"+s.addr, nil)
	id, err := c.Send(context.Background(), smtpmail.Message{To: ana, Subject: "Hola", Text: "Hola"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(s.received()[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	if id == "" || m.Header.Get("Message-Id") != "<"+id+">" {
		t.Errorf("id %q, header %q: want the header to be the id in angle brackets", id, m.Header.Get("Message-Id"))
	}
}

func TestSendRefused(t *testing.T) {
	t.Parallel()
	echo := "<Ana.Garcia@Example.COM>: Recipient address rejected"
	for _, tc := range []struct {
		name      string
		rcptErr   error
		dataErr   error
		code      string
		permanent bool
		message   string
	}{
		{
			name:    "mailbox unavailable",
			rcptErr: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: echo},
			code:    "550", permanent: true, message: "recipient rejected (5.1.1)",
		},
		{
			name:    "greylisted",
			rcptErr: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: echo + ", greylisted"},
			code:    "451", message: "recipient rejected (4.7.1)",
		},
		{
			name:    "content refused",
			dataErr: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Message for Anabel rejected as spam"},
			code:    "554", permanent: true, message: "message rejected (5.7.1)",
		},
		{
			name:    "mailbox full, try later",
			dataErr: &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: echo + ": mailbox full"},
			code:    "452", message: "message rejected (4.2.2)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, serverOptions{})
			s.rcptErr, s.dataErr = tc.rcptErr, tc.dataErr
			c := newClient(t, "smtp://"+s.addr, nil)
			_, err := c.Send(context.Background(), welcomeMessage())
			var ve *vendor.Error
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *vendor.Error", err)
			}
			if ve.Vendor != "smtp" || ve.Op != "send" || ve.Code != tc.code || ve.Permanent != tc.permanent || ve.Message != tc.message {
				t.Errorf("got %s %s code %q permanent %v message %q, want smtp send %q %v %q", ve.Vendor, ve.Op, ve.Code, ve.Permanent, ve.Message, tc.code, tc.permanent, tc.message)
			}
			assertNoPersonalData(t, err)
			if n := len(s.received()); n != 0 {
				t.Errorf("server kept %d messages, want 0", n)
			}
		})
	}
}

func TestSendAuth(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	s.user, s.pass = "cep", "s3cret"
	if _, err := newClient(t, "smtp://cep:s3cret@"+s.addr, nil).Send(context.Background(), welcomeMessage()); err != nil {
		t.Fatalf("right password: %v", err)
	}
	_, err := newClient(t, "smtp://cep:wrong@"+s.addr, nil).Send(context.Background(), welcomeMessage())
	var ve *vendor.Error
	if !errors.As(err, &ve) || !ve.Permanent || ve.Code != "535" || ve.Message != "authentication failed" {
		t.Fatalf("wrong password: got %v, want a permanent 535 authentication failure", err)
	}
	assertNoPersonalData(t, err)
	_, err = newClient(t, "smtp://"+s.addr, nil).Send(context.Background(), welcomeMessage())
	if !errors.As(err, &ve) || !ve.Permanent || ve.Code != "502" {
		t.Fatalf("no credentials: got %v, want a permanent refusal", err)
	}
}

func TestSendKeepsCredentialsOffPlainConnections(t *testing.T) {
	t.Parallel()
	// 127.0.0.2 is loopback to the kernel but not "localhost" to the
	// client, so it stands for a remote server that offers no TLS.
	s := startServer(t, serverOptions{host: "127.0.0.2"})
	s.user, s.pass = "cep", "s3cret"
	_, err := newClient(t, "smtp://cep:s3cret@"+s.addr, nil).Send(context.Background(), welcomeMessage())
	var ve *vendor.Error
	if !errors.As(err, &ve) || !ve.Permanent || !strings.Contains(ve.Message, "unencrypted") {
		t.Fatalf("got %v, want a permanent refusal to send credentials in clear", err)
	}
	assertNoPersonalData(t, err)
}

func TestSendTLS(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := testCertificate(t)
	for _, tc := range []struct {
		name string
		opts serverOptions
		url  string
	}{
		{"STARTTLS required", serverOptions{tls: serverTLS}, "smtp://cep:s3cret@%s?starttls=required"},
		{"STARTTLS when offered", serverOptions{tls: serverTLS}, "smtp://cep:s3cret@%s"},
		{"implicit TLS", serverOptions{tls: serverTLS, implicit: true}, "smtps://cep:s3cret@%s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, tc.opts)
			s.user, s.pass = "cep", "s3cret"
			c := newClient(t, fmt.Sprintf(tc.url, s.addr), clientTLS)
			if _, err := c.Send(context.Background(), welcomeMessage()); err != nil {
				t.Fatal(err)
			}
			if got := s.received(); len(got) != 1 || !got[0].TLS {
				t.Errorf("got %d messages (first over TLS: %v), want 1 over TLS", len(got), len(got) > 0 && got[0].TLS)
			}
		})
	}
}

func TestSendTLSRefusals(t *testing.T) {
	t.Parallel()
	serverTLS, _ := testCertificate(t)
	plain := startServer(t, serverOptions{})
	implicit := startServer(t, serverOptions{tls: serverTLS, implicit: true})
	for _, tc := range []struct {
		name, url, message string
	}{
		{"STARTTLS required, not offered", "smtp://" + plain.addr + "?starttls=required", "does not offer STARTTLS"},
		{"untrusted certificate", "smtps://" + implicit.addr, "certificate not trusted"},
		{"TLS to a plain port", "smtps://" + plain.addr, "does not speak TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := newClient(t, tc.url, nil).Send(context.Background(), welcomeMessage())
			var ve *vendor.Error
			if !errors.As(err, &ve) || !ve.Permanent || !strings.Contains(ve.Message, tc.message) {
				t.Fatalf("got %v, want a permanent error saying %q", err, tc.message)
			}
		})
	}
}

func TestSendTimeout(t *testing.T) {
	t.Parallel()
	// A server that accepts and never greets: only the caller's deadline
	// can end the wait.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	t.Cleanup(conns.Wait)
	t.Cleanup(func() { _ = l.Close() }) // runs first: unblocks Accept
	conns.Go(func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, conn) // until the client hangs up
		_ = conn.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = newClient(t, "smtp://"+l.Addr().String(), nil).Send(ctx, welcomeMessage())
	var ve *vendor.Error
	if !errors.As(err, &ve) || ve.Permanent || ve.Message != "timed out" {
		t.Fatalf("got %v, want a transient timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s, want about the 200ms deadline", d)
	}
}

func TestSendConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	_, err = newClient(t, "smtp://"+addr, nil).Send(context.Background(), welcomeMessage())
	var ve *vendor.Error
	if !errors.As(err, &ve) || ve.Permanent || !strings.Contains(ve.Message, "network error") {
		t.Fatalf("got %v, want a transient network error", err)
	}
}

func TestSendBadMessage(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c := newClient(t, "smtp://"+s.addr, nil)
	for name, m := range map[string]smtpmail.Message{
		"no recipient":       {Subject: "x", Text: "x"},
		"bad recipient":      {To: smtpmail.Recipient{Email: "Ana.Garcia at Example.COM"}, Text: "x"},
		"no content":         {To: ana, Subject: "x"},
		"header injection":   {To: ana, Text: "x", Headers: map[string]string{"X-Lead-Id": "42\r\nBcc: Ana.Garcia@Example.COM"}},
		"reserved header":    {To: ana, Text: "x", Headers: map[string]string{"bcc": "Ana.Garcia@Example.COM"}},
		"invalid message id": {To: ana, Text: "x", Headers: map[string]string{"Message-ID": "no at sign"}},
	} {
		_, err := c.Send(context.Background(), m)
		if !vendor.IsPermanent(err) {
			t.Errorf("%s: got %v, want a permanent error", name, err)
			continue
		}
		assertNoPersonalData(t, err)
	}
	if n := len(s.received()); n != 0 {
		t.Errorf("server got %d messages, want 0", n)
	}
}

// testCertificate makes a self-signed certificate for 127.0.0.1 and the
// client config that trusts it.
func testCertificate(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "cepjobs test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
