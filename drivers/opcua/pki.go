package opcua

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// PKI is the agent's OPC UA identity and trust list, kept under
// <state_dir>/opcua:
//
//	own/cert.der      the application instance certificate (self-signed, RSA 2048)
//	own/key.pem       its private key (mode 0600)
//	trusted/*.der     server certificates the agent accepts
//	rejected/*.der    server certificates it refused, to trust with
//	                  `iot-producer opcua trust`
//
// Files are named after the SHA-256 of the certificate, so trusting is
// copying a file and distrusting is removing one.
type PKI struct {
	Dir  string
	Cert []byte
	Key  *rsa.PrivateKey
	// AppURI is the application URI in the certificate
	// (urn:<host>:iot-producer), sent as the client's ApplicationUri.
	AppURI string
}

// pkiMu serialises the creation of identities: drivers of several PLCs
// start together and must end with one certificate.
var pkiMu sync.Mutex

// PKIDir returns the folder of the OPC UA identity and trust list in a
// state directory.
func PKIDir(stateDir string) string { return filepath.Join(stateDir, "opcua") }

// LoadPKI reads the identity under <stateDir>/opcua, creating the
// certificate and key on first use when create is set.
func LoadPKI(stateDir string, create bool) (*PKI, error) {
	pkiMu.Lock()
	defer pkiMu.Unlock()
	dir := PKIDir(stateDir)
	certPath := filepath.Join(dir, "own", "cert.der")
	keyPath := filepath.Join(dir, "own", "key.pem")
	cert, err := os.ReadFile(certPath)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err := createIdentity(dir, certPath, keyPath); err != nil {
			return nil, err
		}
		cert, err = os.ReadFile(certPath)
	}
	if err != nil {
		return nil, fmt.Errorf("opcua: application certificate: %w", err)
	}
	kp, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("opcua: application key: %w", err)
	}
	key, err := parseKey(kp)
	if err != nil {
		return nil, fmt.Errorf("opcua: application key %s: %w", keyPath, err)
	}
	x, err := x509.ParseCertificate(cert)
	if err != nil {
		return nil, fmt.Errorf("opcua: application certificate %s: %w", certPath, err)
	}
	p := &PKI{Dir: dir, Cert: cert, Key: key}
	if len(x.URIs) > 0 {
		p.AppURI = x.URIs[0].String()
	}
	return p, nil
}

// parseKey reads an RSA key from PEM, PKCS#1 or PKCS#8.
func parseKey(b []byte) (*rsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key (OPC UA security policies need RSA)")
	}
	return rk, nil
}

// LoadKeyPair reads a certificate (DER or PEM) and an RSA key (PEM), for
// user authentication by certificate.
func LoadKeyPair(certFile, keyFile string) ([]byte, *rsa.PrivateKey, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	if blk, _ := pem.Decode(cb); blk != nil {
		cb = blk.Bytes
	}
	if _, err := x509.ParseCertificate(cb); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	k, err := parseKey(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	return cb, k, nil
}

// createIdentity writes a new self-signed application certificate and key.
func createIdentity(dir, certPath, keyPath string) error {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	der, key, err := NewCertificate("iot-producer@"+host, "urn:"+host+":iot-producer", []string{host, "localhost"}, 20*365*24*time.Hour)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "own"), 0o700); err != nil {
		return fmt.Errorf("opcua: creating %s: %w", dir, err)
	}
	kb := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := writeFileAtomic(keyPath, kb, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, der, 0o644)
}

// NewCertificate makes a self-signed RSA 2048 certificate fit for an OPC UA
// application instance: the application URI as a URI SAN, host names and
// addresses as DNS and IP SANs, digital signature, key and data
// encipherment, client and server authentication.
func NewCertificate(commonName, appURI string, hosts []string, validity time.Duration) ([]byte, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("opcua: generating a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(appURI)
	if err != nil {
		return nil, nil, fmt.Errorf("opcua: application uri %q: %w", appURI, err)
	}
	now := time.Now()
	tpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"iot-producer"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		} else if h != "" {
			tpl.DNSNames = append(tpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("opcua: creating a certificate: %w", err)
	}
	return der, key, nil
}

// writeFileAtomic writes through a temporary file and a rename.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("opcua: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("opcua: writing %s: %w", path, err)
	}
	return nil
}

// Fingerprint is the SHA-256 of a certificate in hex, the name of its file
// in the trust list.
func Fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// Describe names a certificate for a person: subject, validity and
// fingerprint.
func Describe(der []byte) string {
	x, err := x509.ParseCertificate(der)
	if err != nil {
		return "unparsable certificate, SHA-256 " + Fingerprint(der)
	}
	return fmt.Sprintf("%q valid %s to %s, SHA-256 %s", x.Subject.String(),
		x.NotBefore.UTC().Format("2006-01-02"), x.NotAfter.UTC().Format("2006-01-02"), Fingerprint(der))
}

// TrustDir is the folder of trusted server certificates.
func TrustDir(stateDir string) string { return filepath.Join(PKIDir(stateDir), "trusted") }

// RejectDir is the folder where refused server certificates are kept.
func RejectDir(stateDir string) string { return filepath.Join(PKIDir(stateDir), "rejected") }

// IsTrusted reports whether the trust list under stateDir holds der.
func IsTrusted(stateDir string, der []byte) bool {
	b, err := os.ReadFile(filepath.Join(TrustDir(stateDir), Fingerprint(der)+".der"))
	return err == nil && string(b) == string(der)
}

// Trust adds der to the trust list under stateDir and removes it from the
// rejected folder; it returns the file written.
func Trust(stateDir string, der []byte) (string, error) {
	if _, err := x509.ParseCertificate(der); err != nil {
		return "", fmt.Errorf("opcua: not a certificate: %w", err)
	}
	dir := TrustDir(stateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("opcua: %w", err)
	}
	p := filepath.Join(dir, Fingerprint(der)+".der")
	if err := writeFileAtomic(p, der, 0o644); err != nil {
		return "", err
	}
	_ = os.Remove(filepath.Join(RejectDir(stateDir), Fingerprint(der)+".der"))
	return p, nil
}

// Reject keeps a refused certificate under rejected/ and returns its file.
func Reject(stateDir string, der []byte) (string, error) {
	dir := RejectDir(stateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("opcua: %w", err)
	}
	p := filepath.Join(dir, Fingerprint(der)+".der")
	return p, writeFileAtomic(p, der, 0o644)
}

// UntrustedError is returned when a server presents a certificate that is
// not in the trust list. Its message says how to trust it.
type UntrustedError struct {
	Endpoint string
	StateDir string
	Cert     []byte
	// Saved is the file under rejected/ that holds the certificate.
	Saved string
}

func (e *UntrustedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the server certificate of %s is not trusted (%s)", e.Endpoint, Describe(e.Cert))
	fmt.Fprintf(&b, "; check its fingerprint with the server's administrator, then run: iot-producer opcua trust --state-dir %s --endpoint %s --fingerprint %s",
		e.StateDir, e.Endpoint, Fingerprint(e.Cert))
	if e.Saved != "" {
		fmt.Fprintf(&b, " (or: iot-producer opcua trust --state-dir %s %s)", e.StateDir, e.Saved)
	}
	return b.String()
}
