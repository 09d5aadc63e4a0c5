module corral.example/servers/go

go 1.19

require github.com/coreos/go-systemd/v22 v22.3.2

replace github.com/coreos/go-systemd/v22 => /usr/share/gocode/src/github.com/coreos/go-systemd
