{{/*
The chart's name, or nameOverride.
*/}}
{{- define "tidings.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A fully qualified name for the release's objects: fullnameOverride, or
<release>-<chart> (just <release> when the release name already contains the chart's).
Truncated to 63 characters (a DNS label); callers that add a suffix keep it short.
*/}}
{{- define "tidings.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The operator's objects: <fullname>-operator, within 63 characters.
*/}}
{{- define "tidings.operatorName" -}}
{{- printf "%s-operator" (include "tidings.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "tidings.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels every object of the release carries.
*/}}
{{- define "tidings.labels" -}}
helm.sh/chart: {{ include "tidings.chart" . }}
{{ include "tidings.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tidings
{{- end }}

{{/*
The labels the operator's Deployment selects its pod by (never change: selectors are
immutable). The component keeps them apart from the chat workloads the operator makes,
which carry app.kubernetes.io/name=tidings too.
*/}}
{{- define "tidings.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidings.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's service account: serviceAccount.name, or the operator's name when the
chart creates it, or "default".
*/}}
{{- define "tidings.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tidings.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator's image: repository:tag (tag defaults to the chart's appVersion), or
repository@digest when a digest is given.
*/}}
{{- define "tidings.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The namespaces the operator watches, as a list; empty means all namespaces.
*/}}
{{- define "tidings.watchNamespaces" -}}
{{- range .Values.operator.watchNamespaces }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
RBAC rules the operator needs cluster-wide whatever it watches (optional: without them
kopf warns and uses what it found at start).
*/}}
{{- define "tidings.clusterRules" -}}
# kopf: discover the ChatCluster resource and follow its CRD.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
# kopf: follow the watched namespaces appearing and going.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}

{{/*
RBAC rules in the namespaces the operator watches (a ClusterRole's when it watches all):
exactly the calls it makes (docs/operator.md, RBAC). The leader Lease has its own Role in
the release's namespace (operator-lease-role.yaml).
*/}}
{{- define "tidings.namespacedRules" -}}
# The ChatClusters: read by the operator, watched and annotated by kopf (its progress and
# last-handled spec; no finalizers, so no update).
- apiGroups: [tidings.dev]
  resources: [chatclusters]
  verbs: [get, list, watch, patch]
# The status the operator writes.
- apiGroups: [tidings.dev]
  resources: [chatclusters/status]
  verbs: [get, patch]
# Children carry owner references with blockOwnerDeletion, which needs this where the
# OwnerReferencesPermissionEnforcement admission plugin runs.
- apiGroups: [tidings.dev]
  resources: [chatclusters/finalizers]
  verbs: [update]
# The children, by server-side apply (a PATCH that creates what is missing), read by name:
# chat and api StatefulSets, push Deployment, Services, the ConfigMap, the budgets. The
# workloads are also watched (only the operator's, by label), so a tick reads them from
# memory.
- apiGroups: [apps]
  resources: [statefulsets, deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
# Services also per chat pod (spec.chat.expose): listed by label and deleted when no longer
# wanted (a pod gone for good, a mode turned off); likewise the Ingress, the Gateway API
# routes and the cert-manager Certificate.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, create, patch, delete]
{{- if .Values.rbac.expose.ingresses }}
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, create, patch, delete]
{{- end }}
{{- if .Values.rbac.expose.gatewayRoutes }}
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes, tlsroutes]
  verbs: [get, list, create, patch, delete]
{{- end }}
{{- if .Values.rbac.expose.certificates }}
- apiGroups: [cert-manager.io]
  resources: [certificates]
  verbs: [get, list, create, patch, delete]
{{- end }}
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch]
# Resizing the chat servers while a changed spec waits for its wiring.
- apiGroups: [apps]
  resources: [statefulsets/scale]
  verbs: [patch]
# Chat pods: readiness, revisions, disruptions (watched by label).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Replacing a chat pod through the eviction API, so PodDisruptionBudgets apply.
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
# Read-only, by name: the Secrets a ChatCluster names (Kafka and Cassandra credentials).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# Events on the ChatClusters (scaled, chat server lost, rollout halted, kopf's errors).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/*
Where the operator's workloads are, for monitors: the watched namespaces, or any.
*/}}
{{- define "tidings.workloadNamespaceSelector" -}}
{{- if .Values.operator.watchNamespaces }}
matchNames:
  {{- range .Values.operator.watchNamespaces }}
  - {{ . | quote }}
  {{- end }}
{{- else }}
any: true
{{- end }}
{{- end }}
