package parser

import (
	"bytes"
	"regexp"
)

// FormatAuto detects the format of each file from its first lines.
const FormatAuto = "auto"

var (
	detectAuditLogin   = regexp.MustCompile(`^\{"ts":"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d","type":"`)
	detectServerAudit  = regexp.MustCompile(`^\d{8} \d\d:\d\d:\d\d,[^,]*,|^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [^:]*server_audit[^:]*: `)
	detectGeneralHead  = regexp.MustCompile(`^\S*(mysqld|mariadbd)\S*, Version: |^Time\s+Id\s+Command\s+Argument`)
	detectErrorLogLine = regexp.MustCompile(`^(\d{4}-\d\d-\d\d(T\d\d| [ \d]\d):\d\d:\d\d\S*|\d{6} [ \d]\d:\d\d:\d\d)\s+(\d+\s+)?\[(Note|Warning|ERROR|Error|System)\]`)
	detectErrorLogJSON = regexp.MustCompile(`^\{\s*"prio"\s*:`)
	detectPercona      = regexp.MustCompile(`^\{"audit_record":|^\s*<AUDIT_RECORD|^"(Connect|Quit|Query|Audit|Change user|NoAudit)","`)
	detectEnterprise   = regexp.MustCompile(`^\s*"(class|event|connection_id|account|login)"\s*:|^\s*\[?\s*\{\s*"timestamp"\s*:\s*"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"\s*,\s*"id"\s*:`)
)

// Detect names the format of a file from its first bytes (up to its first
// 20 non-empty lines), or "" when none matches.
func Detect(head []byte) string {
	n := 0
	for _, line := range bytes.Split(head, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if n++; n > 20 {
			break
		}
		switch {
		case detectAuditLogin.Match(line):
			return FormatAuditLogin
		case detectPercona.Match(line):
			return FormatPerconaAudit
		case detectEnterprise.Match(line):
			return FormatEnterpriseAudit
		case detectServerAudit.Match(line):
			return FormatMariaDBAudit
		case detectErrorLogLine.Match(line), detectErrorLogJSON.Match(line): // before the general log: "[Note]" looks like a command
			return FormatErrorLog
		case detectGeneralHead.Match(line), mysqlGeneralLine.Match(line), mariadbGeneralLine.Match(line):
			return FormatGeneralLog
		}
	}
	return ""
}
