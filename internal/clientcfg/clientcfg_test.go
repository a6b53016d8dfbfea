package clientcfg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pass")
	os.WriteFile(f, []byte("from-file\n"), 0o600)
	t.Setenv("CLIENTCFG_TEST_SECRET", "from-env")
	for _, c := range []struct{ inline, env, file, want string }{
		{"inline", "", "", "inline"}, {"", "CLIENTCFG_TEST_SECRET", "", "from-env"}, {"", "", f, "from-file"}, {"", "", "", ""},
	} {
		if got, err := Secret("password", c.inline, c.env, c.file); err != nil || got != c.want {
			t.Errorf("%+v: %q %v", c, got, err)
		}
	}
	if _, err := Secret("api_key", "s3cret", "X", ""); err == nil || !strings.Contains(err.Error(), "api_key, api_key_env, api_key_file") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("two sources: %v", err)
	}
	if _, err := Secret("password", "", "CLIENTCFG_TEST_UNSET", ""); err == nil || !strings.Contains(err.Error(), "password_env") {
		t.Errorf("unset variable: %v", err)
	}
}

func TestTLSErrorsNameTheSetting(t *testing.T) {
	if _, err := TLS("/nonexistent/ca.pem", "", "", "", false); err == nil || !strings.HasPrefix(err.Error(), "ca_file:") {
		t.Errorf("missing CA: %v", err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	if _, err := TLS(notPEM, "", "", "", false); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("not PEM: %v", err)
	}
	if _, err := TLS("", "/nonexistent/c.pem", "", "", false); err == nil || !strings.HasPrefix(err.Error(), "cert_file/key_file:") {
		t.Errorf("cert without key: %v", err)
	}
	if tc, err := TLS("", "", "", "es.example", true); err != nil || tc.ServerName != "es.example" || !tc.InsecureSkipVerify {
		t.Errorf("plain: %+v %v", tc, err)
	}
}
