// Command caddy is Caddy with its standard modules and caddy-gongbao, the
// same binary `xcaddy build --with github.com/caddy-gongbao/gongbao` makes.
// It holds blank imports and caddycmd.Main only: it must not import
// caddymodule or the engine packages directly (the root package registers
// everything), so that it stays what xcaddy would generate.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddy-gongbao/gongbao"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() { caddycmd.Main() }
