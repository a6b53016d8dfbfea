module github.com/auditlogin/auditlogin

go 1.26.8
