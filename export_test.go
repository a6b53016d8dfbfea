package auditlogin

import "time"

// SetClock replaces the pipeline's clock (rejected-record log windows).
func SetClock(p *Pipeline, now func() time.Time) { p.now = now }
