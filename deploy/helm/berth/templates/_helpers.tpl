{{/* image renders repository[:tag] of an image value. */}}
{{- define "berth.image" -}}
{{- if .tag }}{{ .repository }}:{{ .tag }}{{ else }}{{ .repository }}{{ end -}}
{{- end -}}

{{/* classArgs are the flags both binaries must agree on. */}}
{{- define "berth.classArgs" -}}
- --load-balancer-class={{ .Values.loadBalancerClass }}
- --handle-default-class={{ .Values.handleDefaultClass }}
{{- if .Values.logLevel }}
- --v={{ .Values.logLevel }}
{{- end }}
{{- end -}}
