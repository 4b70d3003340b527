package opcua

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/gopcua/opcua/uasc"
)

// maxFrame bounds a UA TCP message read by the front (the receive buffer
// gopcua's server announces is 64 KiB; OPN carries a certificate or two).
const maxFrame = 1 << 20

// openSecured is the front's answer to gopcua v0.8.0's server, which cannot
// open a secured channel by itself: it creates every channel with security
// mode None (server/channel_broker.go:55, server/server_config.go:120-126)
// and learns the real mode only from the OpenSecureChannel request
// (uasc/secure_channel.go:745), which it never reads, because for mode None
// uasc's channelInstance.verifyAndDecrypt returns the chunk untouched
// (uasc/secure_channel_instance.go:213-215): the request's body is still
// RSA cipher text when it is decoded. The front holds the server's key: it
// decrypts the request, checks the client's signature over it and passes
// it on in clear, without padding and signature. Only the first request of
// a connection: the renewals that follow find the channel in its mode, and
// gopcua decrypts them itself. Everything after it is
// gopcua's own work: the server sets the mode from the request, answers
// with an asymmetrically encrypted and signed response and derives the
// symmetric keys, and every later message is signed (and encrypted) end to
// end between the client and gopcua's server.
func openSecured(b []byte, key *rsa.PrivateKey) ([]byte, error) {
	m := new(uasc.MessageHeader)
	n, err := m.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("OpenSecureChannel header: %w", err)
	}
	h := m.AsymmetricSecurityHeader
	if h.SecurityPolicyURI == ua.SecurityPolicyURINone || h.SecurityPolicyURI == "" {
		return b, nil
	}
	cert, err := x509.ParseCertificate(h.SenderCertificate)
	if err != nil {
		return nil, fmt.Errorf("OpenSecureChannel: the client's certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("OpenSecureChannel: the client's certificate has no RSA key")
	}
	algo, err := uapolicy.Asymmetric(h.SecurityPolicyURI, key, pub)
	if err != nil {
		return nil, fmt.Errorf("OpenSecureChannel: %w", err)
	}
	plain, err := algo.Decrypt(b[n:])
	if err != nil {
		return nil, fmt.Errorf("OpenSecureChannel: decrypting: %w", err)
	}
	msg := append(append([]byte(nil), b[:n]...), plain...)
	sl := algo.RemoteSignatureLength()
	if len(msg) < n+sl+1 {
		return nil, errors.New("OpenSecureChannel: too short for its signature")
	}
	signed, sig := msg[:len(msg)-sl], msg[len(msg)-sl:]
	if err := algo.VerifySignature(signed, sig); err != nil {
		return nil, fmt.Errorf("OpenSecureChannel: the client's signature: %w", err)
	}
	// Padding as uasc counts it (uasc/secure_channel_instance.go:245-253).
	pad := int(signed[len(signed)-1])
	if algo.SignatureLength() > 256 {
		pad = pad<<8 + int(signed[len(signed)-2]) + 1
	}
	pad++
	if len(signed)-pad < n {
		return nil, errors.New("OpenSecureChannel: bad padding")
	}
	out := signed[:len(signed)-pad]
	binary.LittleEndian.PutUint32(out[4:8], uint32(len(out)))
	return out, nil
}

// relayFrames copies UA TCP messages from a client (src) to gopcua's
// server (dst), opening secured channels on the way (openSecured); every
// other message passes unchanged. It returns when either side closes or a
// message is malformed.
func (s *Server) relayFrames(dst, src net.Conn) {
	defer s.wg.Done()
	defer s.closePair(dst, src)
	hdr := make([]byte, 8)
	opened := false
	for {
		if _, err := io.ReadFull(src, hdr); err != nil {
			return
		}
		size := binary.LittleEndian.Uint32(hdr[4:8])
		if size < 8 || size > maxFrame {
			s.opts.Logger.Debug("opcua simulator: malformed message from a client", "size", size)
			return
		}
		b := make([]byte, size)
		copy(b, hdr)
		if _, err := io.ReadFull(src, b[8:]); err != nil {
			return
		}
		if string(b[:3]) == "OPN" {
			s.opens.Add(1)
		}
		if string(b[:3]) == "OPN" && !opened {
			// Only the first: once gopcua's channel has its mode, it
			// decrypts the renewals itself.
			opened = true
			n := len(b)
			var err error
			if b, err = openSecured(b, s.opts.Key); err != nil {
				s.opts.Logger.Warn("opcua simulator: secure channel refused", "client", src.RemoteAddr().String(), "err", err)
				return
			}
			if len(b) != n {
				s.secured.Add(1)
			}
		}
		if !s.flowing() {
			return
		}
		if _, err := dst.Write(b); err != nil {
			return
		}
	}
}
