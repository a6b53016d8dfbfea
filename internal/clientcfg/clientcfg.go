// Package clientcfg holds what every network output configures the same way:
// TLS from files, and secrets given inline, by environment variable or by
// file (never logged, never in an error).
package clientcfg

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
)

// TLS builds a client TLS configuration (TLS 1.2 at least): the CA file's
// certificates as roots (the system's when empty), and a client certificate
// when cert and key are given. Errors name the setting (ca_file, ...).
func TLS(caFile, certFile, keyFile, serverName string, insecure bool) (*tls.Config, error) {
	tc := &tls.Config{ServerName: serverName, InsecureSkipVerify: insecure, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Secret resolves a secret whose settings are name, name_env (a variable's
// name) and name_file (trailing newline dropped); at most one may be set.
// Errors name the setting, never the value.
func Secret(name, inline, env, file string) (string, error) {
	n := 0
	for _, s := range []string{inline, env, file} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		return "", fmt.Errorf("set only one of %s, %s_env, %s_file", name, name, name)
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("%s_env: variable %s is not set", name, env)
		}
		return v, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", name, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return inline, nil
}
