package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// insertLeads adds leads lo..hi (inclusive) in one INSERT … SELECT over
// generate_series. Values vary with i so rows are not all alike: Spanish
// names with and without accents and second surnames, addresses built from
// them, a phone on 4 in 5, campaign, campus and UTM on most, a message on
// some (not exported by default, but it is in the table PostgreSQL reads),
// IPv4 and IPv6 addresses, five real user agents, two consent text
// versions, marketing consent on 2 in 3, received_at spread over the last
// two years in an order unrelated to i.
const insertLeadsSQL = `
insert into cepjobs.leads (id, external_id, first_name, last_name, email, email_normalized, phone,
	course, campaign, site, source, message, utm,
	consent_privacy, consent_marketing, consent_text_version, consent_accepted_at,
	client_ip, client_user_agent, received_at, submitted_by, status, status_changed_at)
select gen_random_uuid(),
	case when s.src = 'meta_lead_ads' then 'l:' || (1200000000000000 + s.i::bigint * 7919)::text
	     when s.i % 4 = 0 then 'cms-' || (100000 + s.i)::text end,
	s.fn, s.ln, e.email, lower(e.email), s.phone,
	s.course, s.campaign, s.site, s.src, s.message, s.utm,
	true, s.i % 3 <> 0, s.consent_version, s.rec - make_interval(secs => 1 + s.i % 40),
	s.ip, s.ua, s.rec, case when s.src = 'meta_lead_ads' then 'meta' else 'cms' end, 'completed', s.rec + interval '2 seconds'
from (
	select i,
		(array['María', 'José', 'Lucía', 'Antonio', 'Carmen', 'Álvaro', 'Laura', 'Javier', 'Ana Isabel', 'Francisco Javier',
		       'Núria', 'Iñaki', 'Paula', 'Sergio', 'Marta', 'Daniel', 'Sofía', 'Manuel', 'Elena', 'Jesús', 'Irene', 'Raúl', 'Ainhoa'])[1 + i % 23] as fn,
		(array['García', 'Fernández', 'González', 'Rodríguez', 'López', 'Martínez', 'Sánchez', 'Pérez', 'Gómez', 'Martín',
		       'Jiménez', 'Ruiz', 'Hernández', 'Díaz', 'Moreno', 'Muñoz', 'Álvarez', 'Romero', 'Alonso', 'Gutiérrez', 'Navarro',
		       'Torres', 'Domínguez', 'Vázquez', 'Ramos', 'Gil', 'Ramírez', 'Serrano', 'Blanco', 'Molina', 'Castillo'])[1 + (i / 23) % 31]
		|| case when i % 3 = 0 then '' else ' ' || (array['Ortega', 'Delgado', 'Castro', 'Ortiz', 'Rubio', 'Marín', 'Sanz', 'Núñez',
		       'Iglesias', 'Medina', 'Garrido', 'Cortés', 'Castillo', 'Santos', 'Lozano', 'Guerrero', 'Cano', 'Prieto', 'Méndez'])[1 + (i / 7) % 19] end as ln,
		case when i % 5 = 4 then null else '+346' || lpad(((i::bigint * 48271) % 100000000)::text, 8, '0') end as phone,
		(array['tecnico-superior-higiene-bucodental', 'tcae-auxiliar-enfermeria', 'tecnico-superior-educacion-infantil',
		       'tecnico-farmacia-parafarmacia', 'tecnico-superior-dietetica', 'tecnico-emergencias-sanitarias',
		       'tecnico-superior-radioterapia-dosimetria', 'tecnico-superior-laboratorio-clinico-biomedico',
		       'curso-celador', 'curso-auxiliar-veterinaria', 'tecnico-superior-imagen-diagnostico', 'ortoprotesica'])[1 + (i / 3) % 12] as course,
		case when i % 6 = 5 then null else (array['meta-2026-otono-sanidad', 'google-search-fp-sanitaria', 'meta-2026-primavera-infantil',
		       'tiktok-2026-tcae', 'google-pmax-2025-navidad', 'email-newsletter-octubre'])[1 + (i / 11) % 6] end as campaign,
		case when i % 9 = 8 then null else (array['madrid', 'barcelona', 'valencia', 'sevilla', 'malaga', 'bilbao', 'online'])[1 + (i / 5) % 7] end as site,
		(array['web', 'web', 'meta_lead_ads', 'landing', 'web', 'whatsapp', 'meta_lead_ads'])[1 + (i / 2) % 7] as src,
		case when i % 10 < 3 then left('Hola, me gustaría recibir información sobre precios, horarios y si hay plazas para la convocatoria de septiembre. '
		       || '¿Se puede hacer online o semipresencial? Gracias.', 60 + i % 110) end as message,
		case when i % 5 < 3 then jsonb_build_object('source', (array['facebook', 'google', 'instagram', 'tiktok'])[1 + i % 4],
		       'medium', (array['cpc', 'paid_social', 'email'])[1 + (i / 4) % 3],
		       'campaign', 'fp-sanitaria-' || (2025 + i % 2)::text || '-' || (1 + i % 12)::text,
		       'content', case when i % 2 = 0 then 'video-testimonio-' || (i % 17)::text end)
		     else '{}'::jsonb end as utm,
		(array['2024-03-v2', '2025-09-v3'])[1 + (i / 13) % 2] as consent_version,
		case when i % 10 = 9 then ('2a0c:5a80:' || to_hex(i % 65536) || '::' || to_hex((i::bigint * 31) % 65536))::inet
		     else ((array[83, 88, 79, 90, 95, 213, 81])[1 + i % 7]::text || '.' || ((i / 7) % 256)::text || '.'
		           || ((i / 1792) % 256)::text || '.' || (1 + i % 254)::text)::inet end as ip,
		(array['Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1',
		       'Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36',
		       'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
		       'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15',
		       'Mozilla/5.0 (Linux; Android 13; Redmi Note 12) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.107 Mobile Safari/537.36 [FBAN/EMA;FBLC/es_ES;FBAV/432.0.0.12.110;]'])[1 + (i / 3) % 5] as ua,
		timestamptz '2024-12-01 00:00:00+00' + make_interval(secs => (i::bigint * 104729) % 62208000) as rec
	from generate_series($1::int, $2::int) as i
) s
cross join lateral (
	select translate(lower(split_part(s.fn, ' ', 1)), 'áéíóúüñ', 'aeiouun') || '.'
		|| translate(lower(split_part(s.ln, ' ', 1)), 'áéíóúüñ', 'aeiouun')
		|| case when s.i % 4 = 0 then '' else (s.i % 1000)::text end || '@'
		|| (array['gmail.com', 'hotmail.com', 'yahoo.es', 'outlook.es', 'icloud.com', 'telefonica.net', 'gmail.com'])[1 + (s.i / 17) % 7] as email
) e`

// insertLeads inserts leads numbered lo..hi and refreshes the planner's
// statistics.
func insertLeads(ctx context.Context, db *pgx.Conn, lo, hi int) error {
	if _, err := db.Exec(ctx, insertLeadsSQL, lo, hi); err != nil {
		return fmt.Errorf("insert leads %d..%d: %w", lo, hi, err)
	}
	if _, err := db.Exec(ctx, "vacuum analyze cepjobs.leads"); err != nil {
		return fmt.Errorf("vacuum analyze leads: %w", err)
	}
	return nil
}
