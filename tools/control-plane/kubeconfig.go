package main

import (
	"encoding/base64"
	"fmt"
)

// writeKubeconfig writes a self-contained kubeconfig (certificates inline).
func writeKubeconfig(path, server string, caPEM, certPEM, keyPEM []byte, user string) error {
	b64 := base64.StdEncoding.EncodeToString
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: control-plane
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: control-plane
  context:
    cluster: control-plane
    user: %s
    namespace: default
current-context: control-plane
`, server, b64(caPEM), user, b64(certPEM), b64(keyPEM), user)
	return writeFileAtomic(path, []byte(cfg), 0o600)
}
