/*
 * kiosk_guard: the rules Mosquitto 2.0's password and ACL files cannot say, as a broker plugin.
 *
 * The password file checks each kiosk's password and the ACL file keeps it to its own topics; these
 * checks sit in front of both (they answer "refuse" or "defer", never "allow"):
 *
 *   - a kiosk logs in only with a client certificate whose common name is its user name: kiosk A's
 *     certificate with kiosk B's password is refused, and so is a kiosk password with no certificate
 *     (the hub's own loopback listener asks for none);
 *   - a client id is its user name, or its user name, a colon and a suffix (a kiosk's renewal beside its
 *     agent, the hub's ingest workers): no client can take over another's session (Mosquitto drops the
 *     earlier holder of an id), and kiosk ids cannot hold a colon, so none is another's prefix;
 *   - a kiosk may not subscribe to a shared subscription ($share/...): the broker would hand it a share
 *     of ingest's messages, which the ACL then drops;
 *   - a kiosk may publish a retained message only as its own presence (its last will): a retained
 *     uplink would outlive the kiosk, even its revocation;
 *   - when the hub revokes kiosks it lists them in a file and reloads the broker (SIGHUP); this plugin
 *     then disconnects each one and publishes, retained, the offline presence its last will would have:
 *     the broker's own re-check after a reload drops a revoked client without its will, and a retained
 *     "online" would then say so for ever.
 *
 * Users whose names start with the hub prefix ("hub-") are the hub's own; every other user is a kiosk.
 * Options (plugin_opt_*): hub_prefix, topic_root, revoked_file.
 * Built by hub/fleet/broker_plugin.py against Debian's mosquitto-dev; the Python side is the documentation.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define MAX_NAME 128

static mosquitto_plugin_id_t *plugin_id = NULL;
static char hub_prefix[MAX_NAME] = "hub-";
static char topic_root[MAX_NAME] = "kiosk";
static char revoked_file[4096] = "";
static char **revoked = NULL;
static size_t revoked_count = 0;

static bool is_hub_user(const char *username)
{
	return strncmp(username, hub_prefix, strlen(hub_prefix)) == 0;
}

static void forget_revoked(void)
{
	for(size_t i = 0; i < revoked_count; i++){
		free(revoked[i]);
	}
	free(revoked);
	revoked = NULL;
	revoked_count = 0;
}

/* One kiosk id a line; a missing file is an empty list. */
static void read_revoked(void)
{
	forget_revoked();
	if(revoked_file[0] == '\0') return;
	FILE *f = fopen(revoked_file, "r");
	if(f == NULL) return;
	char line[MAX_NAME + 2];
	while(fgets(line, sizeof(line), f) != NULL){
		line[strcspn(line, "\r\n")] = '\0';
		if(line[0] == '\0') continue;
		char **grown = realloc(revoked, (revoked_count + 1) * sizeof(char *));
		if(grown == NULL) break;
		revoked = grown;
		revoked[revoked_count] = strdup(line);
		if(revoked[revoked_count] == NULL) break;
		revoked_count++;
	}
	fclose(f);
}

static bool is_revoked(const char *username)
{
	for(size_t i = 0; i < revoked_count; i++){
		if(strcmp(revoked[i], username) == 0) return true;
	}
	return false;
}

/* The certificate's common name into `out`; false when there is none (or it holds a NUL). */
static bool certificate_name(X509 *cert, char *out, size_t size)
{
	X509_NAME *subject = X509_get_subject_name(cert);
	if(subject == NULL) return false;
	int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
	if(index < 0) return false;
	ASN1_STRING *value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
	if(value == NULL) return false;
	int length = ASN1_STRING_length(value);
	if(length <= 0 || (size_t)length >= size) return false;
	const unsigned char *data = ASN1_STRING_get0_data(value);
	if(memchr(data, '\0', (size_t)length) != NULL) return false;
	memcpy(out, data, (size_t)length);
	out[length] = '\0';
	return true;
}

/* The client id is the user name, or the user name, ':' and a suffix. */
static bool owns_client_id(const char *username, const char *client_id)
{
	size_t n = strlen(username);
	return strncmp(client_id, username, n) == 0 && (client_id[n] == '\0' || client_id[n] == ':');
}

static int refuse(const char *username, const char *client_id, const char *why)
{
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "kiosk_guard: refused login of user '%s' (client id '%s'): %s",
			username, client_id ? client_id : "", why);
	return MOSQ_ERR_AUTH;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *username = ed->username;
	const char *client_id = mosquitto_client_id(ed->client);
	if(username == NULL) return MOSQ_ERR_PLUGIN_DEFER; /* anonymous: the broker's own setting refuses it */
	if(client_id == NULL) client_id = "";

	X509 *cert = mosquitto_client_certificate(ed->client);
	if(is_hub_user(username)){
		if(cert != NULL){
			X509_free(cert);
			return refuse(username, client_id, "the hub's users do not log in with a kiosk certificate");
		}
		if(!owns_client_id(username, client_id)){
			return refuse(username, client_id, "the client id belongs to another user");
		}
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	if(cert == NULL){
		return refuse(username, client_id, "a kiosk logs in only with its client certificate");
	}
	char name[MAX_NAME];
	bool named = certificate_name(cert, name, sizeof(name));
	X509_free(cert);
	if(!named || strcmp(name, username) != 0){
		return refuse(username, client_id, "the certificate names another kiosk");
	}
	if(!owns_client_id(username, client_id)){
		return refuse(username, client_id, "the client id belongs to another user");
	}
	if(is_revoked(username)){
		return refuse(username, client_id, "revoked");
	}
	return MOSQ_ERR_PLUGIN_DEFER; /* the password file has the last word */
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *username = mosquitto_client_username(ed->client);
	if(username == NULL || is_hub_user(username)) return MOSQ_ERR_PLUGIN_DEFER;

	if(ed->access == MOSQ_ACL_SUBSCRIBE && strncmp(ed->topic, "$share/", 7) == 0){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "kiosk_guard: kiosk '%s' may not join a shared subscription",
				username);
		return MOSQ_ERR_ACL_DENIED;
	}
	if(ed->access == MOSQ_ACL_WRITE && ed->retain){
		char presence[2 * MAX_NAME + 16];
		snprintf(presence, sizeof(presence), "%s/%s/presence", topic_root, username);
		if(strcmp(ed->topic, presence) != 0){
			mosquitto_log_printf(MOSQ_LOG_NOTICE,
					"kiosk_guard: kiosk '%s' may publish a retained message only as its presence", username);
			return MOSQ_ERR_ACL_DENIED;
		}
	}
	return MOSQ_ERR_PLUGIN_DEFER;
}

static int on_reload(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	(void)userdata;
	static const char offline[] = "{\"online\":false}";
	read_revoked();
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "kiosk_guard: reloaded; %zu revoked kiosk(s)", revoked_count);
	for(size_t i = 0; i < revoked_count; i++){
		/* What its last will would have said, retained, from the broker itself: the kiosk's will cannot be
		 * sent from here (mid-reload the ACL file is not loaded, and a will the ACL refuses is dropped), and
		 * the broker's re-check after the reload drops it without its will. */
		char topic[2 * MAX_NAME + 16];
		snprintf(topic, sizeof(topic), "%s/%s/presence", topic_root, revoked[i]);
		mosquitto_broker_publish_copy(NULL, topic, (int)strlen(offline), offline, 1, true, NULL);
		mosquitto_kick_client_by_username(revoked[i], false);
	}
	return MOSQ_ERR_SUCCESS;
}

static void copy_option(char *dest, size_t size, const char *value)
{
	snprintf(dest, size, "%s", value);
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
		int option_count)
{
	(void)userdata;
	plugin_id = identifier;
	for(int i = 0; i < option_count; i++){
		if(strcmp(options[i].key, "hub_prefix") == 0){
			copy_option(hub_prefix, sizeof(hub_prefix), options[i].value);
		}else if(strcmp(options[i].key, "topic_root") == 0){
			copy_option(topic_root, sizeof(topic_root), options[i].value);
		}else if(strcmp(options[i].key, "revoked_file") == 0){
			copy_option(revoked_file, sizeof(revoked_file), options[i].value);
		}else{
			mosquitto_log_printf(MOSQ_LOG_ERR, "kiosk_guard: unknown option '%s'", options[i].key);
			return MOSQ_ERR_INVAL;
		}
	}
	if(hub_prefix[0] == '\0'){
		mosquitto_log_printf(MOSQ_LOG_ERR, "kiosk_guard: hub_prefix must not be empty");
		return MOSQ_ERR_INVAL;
	}
	read_revoked();
	int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if(rc == MOSQ_ERR_SUCCESS) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if(rc == MOSQ_ERR_SUCCESS) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_RELOAD, on_reload, NULL, NULL);
	return rc;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_RELOAD, on_reload, NULL);
	forget_revoked();
	return MOSQ_ERR_SUCCESS;
}
