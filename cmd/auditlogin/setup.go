package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/auditlogin/auditlogin"
	"github.com/auditlogin/auditlogin/config"
	"github.com/auditlogin/auditlogin/outputs/elasticsearch"
)

// cmdSetup installs what Elasticsearch and Kibana need: the ILM policy, the
// index template, and (with --kibana) the data view and dashboard.
func cmdSetup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file (its outputs.elasticsearch is used)")
	kibana := fs.String("kibana", "", "Kibana URL to import the data view, visualizations and dashboard into")
	export := fs.String("export-kibana", "", "write the Kibana saved objects (NDJSON, for a manual import) to this file and exit")
	if done, code := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	cfg, why, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "auditlogin setup: %v\n", err)
		return exitConfig
	}
	e := cfg.Outputs.Elasticsearch
	if e == nil {
		fmt.Fprintf(stderr, "auditlogin setup: %s has no outputs.elasticsearch\n", why)
		return exitConfig
	}
	schema, _ := auditlogin.ParseSchema(cfg.EventSchema) // validated
	log := newLogger(config.Log{Level: "warn", Format: "text"}, stderr)
	out, err := newESOutput(e, log)
	if err != nil {
		fmt.Fprintf(stderr, "auditlogin setup: %v\n", err)
		return exitConfig
	}
	if *export != "" {
		if err := os.WriteFile(*export, elasticsearch.KibanaObjects(out.IndexPattern(), schema), 0o644); err != nil {
			fmt.Fprintf(stderr, "auditlogin setup: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "wrote %s: import it in Kibana (Stack Management, Saved objects, Import)\n", *export)
		return exitOK
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	report, err := out.Setup(ctx, elasticsearch.SetupConfig{TemplateName: e.TemplateName, ILMPolicy: e.ILMPolicy,
		DeleteAfter: e.DeleteAfter, KibanaURL: *kibana, Schema: schema})
	for _, line := range report {
		fmt.Fprintln(stdout, line)
	}
	if err != nil {
		fmt.Fprintf(stderr, "auditlogin setup: %v\n", err)
		return exitFail
	}
	return exitOK
}
