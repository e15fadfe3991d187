package caddymodule_test

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	_ "github.com/caddy-gongbao/gongbao/caddymodule"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func httpServerType() caddyfile.ServerType { return httpcaddyfile.ServerType{} }
