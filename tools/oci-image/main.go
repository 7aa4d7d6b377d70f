// Command oci-image assembles a container image from directories, without a container
// runtime: each --layer DIR becomes one layer (a tar of DIR's tree, root at /), and the
// image is written as an OCI image layout directory and/or a `docker load` tarball.
//
// The output is reproducible: entries are sorted, every mtime is --created (default the
// Unix epoch, or SOURCE_DATE_EPOCH), owners are 0:0 unless --chown says otherwise, and no
// host user or group names are recorded.
//
//	oci-image --layer base/ --layer app/ --chown home/nonroot=65532:65532 \
//	  --user 65532:65532 --entrypoint /iam-operator --env PATH=/usr/bin \
//	  --label org.opencontainers.image.title=iam-operator \
//	  --oci-layout out/oci --tarball out/image.tar --tag iam-operator:0.1.0
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

type owner struct{ uid, gid int }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "oci-image:", err)
		os.Exit(1)
	}
}

func run() error {
	var layers, envs, labels, chowns, entrypoint list
	var user, workdir, ociLayout, tarPath, tag, created, arch, osName string
	flag.Var(&layers, "layer", "directory whose tree becomes one layer (repeatable, in order)")
	flag.Var(&chowns, "chown", "PATH=UID:GID owner of PATH (relative to the layer root) in every layer holding it (repeatable)")
	flag.Var(&entrypoint, "entrypoint", "entrypoint argument (repeatable, in order)")
	flag.Var(&envs, "env", "KEY=VALUE in the image's environment (repeatable)")
	flag.Var(&labels, "label", "KEY=VALUE label (repeatable)")
	flag.StringVar(&user, "user", "", "user the container runs as (UID:GID)")
	flag.StringVar(&workdir, "workdir", "/", "working directory")
	flag.StringVar(&ociLayout, "oci-layout", "", "write an OCI image layout to this directory (replaced)")
	flag.StringVar(&tarPath, "tarball", "", "write a `docker load` tarball to this file")
	flag.StringVar(&tag, "tag", "iam-operator:latest", "image reference recorded in the outputs")
	flag.StringVar(&created, "created", "", "creation time and every file's mtime, RFC 3339 (default: SOURCE_DATE_EPOCH, else the Unix epoch)")
	flag.StringVar(&arch, "arch", "amd64", "image architecture (GOARCH naming)")
	flag.StringVar(&osName, "os", "linux", "image OS")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	if len(layers) == 0 {
		return errors.New("at least one --layer is needed")
	}
	if ociLayout == "" && tarPath == "" {
		return errors.New("nothing to write: give --oci-layout and/or --tarball")
	}
	when, err := creationTime(created)
	if err != nil {
		return err
	}
	owners := map[string]owner{}
	for _, c := range chowns {
		p, ids, ok := strings.Cut(c, "=")
		u, g, ok2 := strings.Cut(ids, ":")
		uid, err1 := strconv.Atoi(u)
		gid, err2 := strconv.Atoi(g)
		if !ok || !ok2 || err1 != nil || err2 != nil {
			return fmt.Errorf("--chown %q: want PATH=UID:GID", c)
		}
		owners[strings.Trim(p, "/")] = owner{uid, gid}
	}
	labelMap := map[string]string{}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return fmt.Errorf("--label %q: want KEY=VALUE", l)
		}
		labelMap[k] = v
	}
	for _, e := range envs {
		if !strings.Contains(e, "=") {
			return fmt.Errorf("--env %q: want KEY=VALUE", e)
		}
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, dir := range layers {
		data, err := layerTar(dir, when, owners)
		if err != nil {
			return fmt.Errorf("layer %s: %w", dir, err)
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return fmt.Errorf("layer %s: %w", dir, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer: layer,
			History: v1.History{
				Created:   v1.Time{Time: when},
				CreatedBy: "oci-image --layer " + filepath.Base(dir),
			},
		})
		if err != nil {
			return err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	cf.OS = osName
	cf.Created = v1.Time{Time: when}
	cf.Config = v1.Config{
		User:       user,
		Entrypoint: entrypoint,
		Env:        envs,
		Labels:     labelMap,
		WorkingDir: workdir,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}

	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("--tag %q: %w", tag, err)
	}
	if ociLayout != "" {
		if err := os.RemoveAll(ociLayout); err != nil {
			return err
		}
		p, err := layout.Write(ociLayout, empty.Index)
		if err != nil {
			return err
		}
		// ref.name is the tag, as `skopeo copy oci:DIR:TAG` selects it; containerd's
		// `ctr image import` names the image from io.containerd.image.name.
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": ref.TagStr(),
			"io.containerd.image.name":          ref.Name(),
		})); err != nil {
			return err
		}
	}
	if tarPath != "" {
		if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
			return err
		}
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	size, err := img.Size()
	if err != nil {
		return err
	}
	out, _ := json.Marshal(map[string]any{"reference": ref.Name(), "digest": digest.String(), "manifestSize": size})
	fmt.Println(string(out))
	return nil
}

// creationTime is --created, else SOURCE_DATE_EPOCH, else the Unix epoch: never the clock,
// so two builds of the same files give the same image digest.
func creationTime(flagValue string) (time.Time, error) {
	if flagValue != "" {
		t, err := time.Parse(time.RFC3339, flagValue)
		if err != nil {
			return time.Time{}, fmt.Errorf("--created: %w", err)
		}
		return t.UTC(), nil
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Unix(0, 0).UTC(), nil
}

// layerTar is the uncompressed tar of dir's tree: directories, regular files and symlinks
// only (anything else is an error), in sorted order, with fixed times and owners.
func layerTar(dir string, when time.Time, owners map[string]owner) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return nil, err
		}
		rel = filepath.ToSlash(rel)
		info, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{
			Name:    rel,
			Mode:    int64(info.Mode().Perm()),
			ModTime: when,
			Format:  tar.FormatPAX,
		}
		if info.Mode()&fs.ModeSetuid != 0 || info.Mode()&fs.ModeSetgid != 0 {
			return nil, fmt.Errorf("%s: setuid/setgid files are not allowed in this image", rel)
		}
		if info.Mode()&fs.ModeSticky != 0 {
			hdr.Mode |= 01000
		}
		if o, ok := owners[rel]; ok {
			hdr.Uid, hdr.Gid = o.uid, o.gid
		}
		switch {
		case info.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case info.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = info.Size()
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = target
		default:
			return nil, fmt.Errorf("%s: unsupported file type %v", rel, info.Mode().Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
