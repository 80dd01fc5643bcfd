// Command etcd is a plain etcd server built from the go.etcd.io/etcd/server/v3
// module, so the test apiserver needs no prebuilt binary download.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
