// Package gongbao is caddy-gongbao's entry point for xcaddy: importing it
// registers the Caddy modules (the gongbao app, the gongbao handlers, the
// Caddyfile syntax and the "caddy gongbao" command) and makes the shipped
// mapping files the default mapping set.
//
//	xcaddy build v2.11.9 --with github.com/caddy-gongbao/gongbao
package gongbao

import (
	"embed"

	"github.com/caddy-gongbao/gongbao/caddymodule"
)

// shipped holds mappings/*.yaml. It lives in the module's root package
// because embed cannot reach a folder above the embedding package.
//
//go:embed mappings/*.yaml
var shipped embed.FS

func init() {
	caddymodule.RegisterBuiltinMappings(shipped)
}
