{
  "variables": {
    "has_libbpf%": "<!(pkg-config --exists libbpf && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "sluice_native",
      "sources": ["native/sluice_native.c", "native/dns_fast.c"],
      "libraries": ["-lm"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "sluice_bpf",
      "sources": ["native/sluice_bpf.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"],
      "defines": ["NAPI_VERSION=8"],
      "conditions": [
        ["has_libbpf==1", { "defines": ["SLUICE_HAVE_LIBBPF=1"], "libraries": ["-lbpf"] }]
      ]
    }
  ]
}
