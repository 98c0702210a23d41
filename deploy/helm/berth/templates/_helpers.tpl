{{/* image renders repository[:tag] of an image value. */}}
{{- define "berth.image" -}}
{{- if .tag }}{{ .repository }}:{{ .tag }}{{ else }}{{ .repository }}{{ end -}}
{{- end -}}

{{/* classArgs are the flags both binaries share: the class they agree on, and logging. */}}
{{- define "berth.classArgs" -}}
- --load-balancer-class={{ .Values.loadBalancerClass }}
- --handle-default-class={{ .Values.handleDefaultClass }}
{{- $level := toString .Values.logLevel }}
{{- if not (has $level (list "" "0" "info")) }}
- --log-level={{ $level }}
{{- end }}
{{- if and .Values.logFormat (ne .Values.logFormat "text") }}
- --log-format={{ .Values.logFormat }}
{{- end }}
{{- end -}}
